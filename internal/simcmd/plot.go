package simcmd

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// plotColours are the policies' line colours, in --policy order.
var plotColours = []string{"#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f"}

// Plot geometry, in SVG user units.
const (
	plotWidth   = 900
	panelHeight = 240
	marginLeft  = 70
	marginRight = 20
	marginTop   = 66 // two rows of legend above the first panel
	panelGap    = 70
)

// panel maps data coordinates onto one panel of the figure.
type panel struct {
	top              float64
	x0, x1, y0, y1   float64 // data ranges
	logX, logY       bool
	title, xLabel    string
	yLabel           string
	xTicks, yTicks   []float64
	xFormat, yFormat func(float64) string
}

func (p *panel) tx(v float64) float64 {
	if p.logX {
		v = math.Log10(max(v, p.x0))
	}
	lo, hi := p.x0, p.x1
	if p.logX {
		lo, hi = math.Log10(lo), math.Log10(hi)
	}
	return marginLeft + (v-lo)/(hi-lo)*(plotWidth-marginLeft-marginRight)
}

func (p *panel) ty(v float64) float64 {
	lo, hi := p.y0, p.y1
	if p.logY {
		v, lo, hi = math.Log10(1+max(v, 0)), math.Log10(1+lo), math.Log10(1+hi)
	}
	return p.top + panelHeight - (v-lo)/(hi-lo)*panelHeight
}

// frame draws the panel's axes, ticks and labels.
func (p *panel) frame(w io.Writer) {
	l, r := float64(marginLeft), float64(plotWidth-marginRight)
	fmt.Fprintf(w, "<text x=\"%g\" y=\"%g\" font-weight=\"bold\">%s</text>\n", l, p.top-10, p.title)
	fmt.Fprintf(w, "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%d\" fill=\"none\" stroke=\"#444\"/>\n", l, p.top, r-l, panelHeight)
	for _, t := range p.xTicks {
		x := p.tx(t)
		fmt.Fprintf(w, "<line x1=\"%.1f\" y1=\"%g\" x2=\"%.1f\" y2=\"%g\" stroke=\"#ddd\"/>\n", x, p.top, x, p.top+panelHeight)
		fmt.Fprintf(w, "<text x=\"%.1f\" y=\"%g\" text-anchor=\"middle\">%s</text>\n", x, p.top+panelHeight+15, p.xFormat(t))
	}
	for _, t := range p.yTicks {
		y := p.ty(t)
		fmt.Fprintf(w, "<line x1=\"%g\" y1=\"%.1f\" x2=\"%g\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", l, y, r, y)
		fmt.Fprintf(w, "<text x=\"%g\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", l-5, y+4, p.yFormat(t))
	}
	fmt.Fprintf(w, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">%s</text>\n", (l+r)/2, p.top+panelHeight+32, p.xLabel)
	fmt.Fprintf(w, "<text transform=\"translate(%g,%g) rotate(-90)\" text-anchor=\"middle\">%s</text>\n", l-50, p.top+panelHeight/2, p.yLabel)
}

// line draws one series as a polyline.
func (p *panel) line(w io.Writer, colour string, xs, ys []float64) {
	var b strings.Builder
	for i := range xs {
		fmt.Fprintf(&b, "%.1f,%.1f ", p.tx(xs[i]), p.ty(ys[i]))
	}
	fmt.Fprintf(w, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.2\" points=\"%s\"/>\n", colour, strings.TrimSpace(b.String()))
}

// writePlot draws, one line per policy, the queue length and the GPU
// utilisation over time and the JCT CDF, as an SVG file.
func writePlot(path string, rs []policyResult) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	drawPlot(w, rs)
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func drawPlot(w io.Writer, rs []policyResult) {
	height := marginTop + 3*panelHeight + 3*panelGap
	fmt.Fprintf(w, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"11\">\n",
		plotWidth, height, plotWidth, height)
	fmt.Fprintf(w, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n")
	// The time axis is days since the earliest sample of any policy.
	var start time.Time
	var days, maxQueue, maxJCT float64
	minJCT := math.Inf(1)
	for _, r := range rs {
		if len(r.timeline) > 0 && (start.IsZero() || r.timeline[0].At.Before(start)) {
			start = r.timeline[0].At
		}
	}
	for _, r := range rs {
		for _, s := range r.timeline {
			days = max(days, s.At.Sub(start).Hours()/24)
			maxQueue = max(maxQueue, float64(s.Queued))
		}
		for _, j := range r.results {
			v := j.End.Sub(j.Submit).Seconds()
			maxJCT, minJCT = max(maxJCT, v), min(minJCT, v)
		}
	}
	days = max(days, 1)
	dayTicks := ticks(0, days)
	dayFmt := func(v float64) string { return fmt.Sprintf("%g", v) }
	queue := &panel{top: marginTop, x0: 0, x1: days, y0: 0, y1: max(maxQueue, 1), logY: true,
		title: "Jobs waiting (log scale)", xLabel: "days since the first submit", yLabel: "jobs",
		xTicks: dayTicks, yTicks: decades(max(maxQueue, 1)), xFormat: dayFmt, yFormat: dayFmt}
	util := &panel{top: marginTop + panelHeight + panelGap, x0: 0, x1: days, y0: 0, y1: 1,
		title: "GPUs in use (fraction of all GPUs; 24-hour average)", xLabel: "days since the first submit", yLabel: "utilisation",
		xTicks: dayTicks, yTicks: []float64{0, 0.25, 0.5, 0.75, 1}, xFormat: dayFmt, yFormat: func(v float64) string { return fmt.Sprintf("%.2f", v) }}
	minJCT = max(minJCT, 1)
	maxJCT = max(maxJCT, minJCT*10)
	cdf := &panel{top: marginTop + 2*(panelHeight+panelGap), x0: minJCT, x1: maxJCT, y0: 0, y1: 1, logX: true,
		title: "JCT CDF", xLabel: "job completion time (log scale)", yLabel: "fraction of jobs",
		xTicks: durationTicks(minJCT, maxJCT), yTicks: []float64{0, 0.25, 0.5, 0.75, 1},
		xFormat: func(v float64) string { return shortDuration(v) }, yFormat: func(v float64) string { return fmt.Sprintf("%.2f", v) }}
	for _, p := range []*panel{queue, util, cdf} {
		p.frame(w)
	}
	for i, r := range rs {
		colour := plotColours[i%len(plotColours)]
		var xs, qs, us []float64
		for _, s := range r.timeline {
			xs = append(xs, s.At.Sub(start).Hours()/24)
			qs = append(qs, float64(s.Queued))
			us = append(us, float64(s.UsedGPUs)/float64(max(r.gpus, 1)))
		}
		queue.line(w, colour, xs, qs)
		util.line(w, colour, xs, movingAverage(us, 24))
		jct := make([]float64, len(r.results))
		for k, j := range r.results {
			jct[k] = max(j.End.Sub(j.Submit).Seconds(), minJCT)
		}
		slices.Sort(jct)
		var cx, cy []float64
		const points = 400
		for k := 0; k <= points; k++ {
			q := float64(k) / points
			if len(jct) == 0 {
				break
			}
			cx = append(cx, jct[min(len(jct)-1, int(q*float64(len(jct)-1)))])
			cy = append(cy, q)
		}
		cdf.line(w, colour, cx, cy)
		label := r.name
		if r.model != "" {
			label += " (" + r.model + " limits)"
		}
		x := marginLeft + float64(i%4)*200
		y := 16 + float64(i/4)*16
		fmt.Fprintf(w, "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"%s\" stroke-width=\"3\"/>\n", x, y-4, x+20, y-4, colour)
		fmt.Fprintf(w, "<text x=\"%g\" y=\"%g\">%s</text>\n", x+25, y, label)
	}
	fmt.Fprintln(w, "</svg>")
}

// movingAverage smooths xs over a trailing window of n samples.
func movingAverage(xs []float64, n int) []float64 {
	out := make([]float64, len(xs))
	var sum float64
	for i, x := range xs {
		sum += x
		if i >= n {
			sum -= xs[i-n]
		}
		out[i] = sum / float64(min(i+1, n))
	}
	return out
}

// ticks returns about 8 round ticks from lo to hi.
func ticks(lo, hi float64) []float64 {
	step := math.Pow(10, math.Floor(math.Log10((hi-lo)/8)))
	for _, m := range []float64{1, 2, 5, 10} {
		if (hi-lo)/(step*m) <= 10 {
			step *= m
			break
		}
	}
	var out []float64
	for v := math.Ceil(lo/step) * step; v <= hi; v += step {
		out = append(out, v)
	}
	return out
}

// decades returns 0 and the powers of ten up to hi.
func decades(hi float64) []float64 {
	out := []float64{0}
	for v := 1.0; v <= hi; v *= 10 {
		out = append(out, v)
	}
	return out
}

// durationTicks returns round durations (1m, 10m, 1h, …) within [lo, hi].
func durationTicks(lo, hi float64) []float64 {
	var out []float64
	for _, v := range []float64{1, 10, 60, 600, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400, 365 * 86400} {
		if v >= lo && v <= hi {
			out = append(out, v)
		}
	}
	return out
}

// shortDuration prints seconds as 1s, 10m, 6h, 7d.
func shortDuration(v float64) string {
	switch {
	case v >= 86400:
		return fmt.Sprintf("%gd", v/86400)
	case v >= 3600:
		return fmt.Sprintf("%gh", v/3600)
	case v >= 60:
		return fmt.Sprintf("%gm", v/60)
	}
	return fmt.Sprintf("%gs", v)
}
