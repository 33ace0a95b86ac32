package gpu

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// The legend nvidia-smi prints under the matrix (drivers since 384; older
// ones said SOC for SYS and had no NODE).
const topoLegend = `Legend:

  X    = Self
  SYS  = Connection traversing PCIe as well as the SMP interconnect between NUMA nodes (e.g., QPI/UPI)
  NODE = Connection traversing PCIe as well as the interconnect between PCIe Host Bridges within a NUMA node
  PHB  = Connection traversing PCIe as well as a PCIe Host Bridge (typically the CPU)
  PXB  = Connection traversing multiple PCIe bridges (without traversing the PCIe Host Bridge)
  PIX  = Connection traversing at most a single PCIe bridge
  NV#  = Connection traversing a bonded set of # NVLinks
`

// WriteTopo writes t exactly as current drivers' `nvidia-smi topo -m`
// prints it (without the terminal's underline escapes): a tab-separated
// matrix with GPU and NIC rows and columns, the CPU Affinity, NUMA Affinity
// and GPU NUMA ID columns on GPU rows, the legend, and the NIC legend when
// there are NICs. Unknown affinities print as N/A.
func (t *Topology) WriteTopo(w io.Writer) error {
	var b bytes.Buffer
	n := t.NumDevices()
	for d := range n {
		b.WriteString("\t" + t.deviceName(d))
	}
	b.WriteString("\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\n")
	for i := range n {
		b.WriteString(t.deviceName(i))
		for j := range n {
			cell := t.Links[i][j].String()
			if i == j {
				cell = " X "
			}
			b.WriteString("\t" + cell)
		}
		if i < len(t.GPUs) {
			g := t.GPUs[i]
			cpu, numa := g.CPUAffinity, "N/A"
			if cpu == "" {
				cpu = "N/A"
			}
			if g.NUMANode >= 0 {
				numa = strconv.Itoa(g.NUMANode)
			}
			b.WriteString("\t" + cpu + "\t" + numa + "\t\tN/A\n")
		} else {
			b.WriteString("\t\t\t\t\n")
		}
	}
	b.WriteString("\n" + topoLegend)
	if len(t.NICs) > 0 {
		b.WriteString("\nNIC Legend:\n\n")
		for k, nic := range t.NICs {
			fmt.Fprintf(&b, "  NIC%d: %s\n", k, nic.Name)
		}
		b.WriteString("\n")
	}
	_, err := w.Write(b.Bytes())
	return err
}

// TopoString returns what WriteTopo writes.
func (t *Topology) TopoString() string {
	var b strings.Builder
	_ = t.WriteTopo(&b) // a strings.Builder does not fail
	return b.String()
}

// ErrTopoSyntax is wrapped by every ParseError.
var ErrTopoSyntax = errors.New("gpu: malformed nvidia-smi topo -m output")

// ParseError is a malformed `nvidia-smi topo -m` input: where, and what.
type ParseError struct {
	Line, Col int // 1-based; Col is 0 when the whole line is at fault
	Msg       string
}

func (e *ParseError) Error() string {
	if e.Col > 0 {
		return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Col, e.Msg)
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
}

// Unwrap lets errors.Is(err, ErrTopoSyntax) hold.
func (e *ParseError) Unwrap() error { return ErrTopoSyntax }

func errAt(line, col int, format string, args ...any) *ParseError {
	return &ParseError{Line: line, Col: col, Msg: fmt.Sprintf(format, args...)}
}

// ParseTopoFile reads a saved `nvidia-smi topo -m` output (see ParseTopo).
// Errors name the file.
func ParseTopoFile(path string) (*Topology, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gpu: topology file: %w", err)
	}
	defer f.Close()
	t, err := ParseTopo(f)
	if err != nil {
		return nil, fmt.Errorf("gpu: topology file %s: %w", path, err)
	}
	t.Source = "file:" + path
	return t, nil
}

// token is a whitespace-separated field and its 1-based column.
type token struct {
	s   string
	col int
}

func tokenize(line string) []token {
	var toks []token
	start := -1
	for i, r := range line + " " {
		space := r == ' ' || r == '\t'
		switch {
		case !space && start < 0:
			start = i
		case space && start >= 0:
			toks = append(toks, token{line[start:i], start + 1})
			start = -1
		}
	}
	return toks
}

var ansiEscape = regexp.MustCompile("\x1b\\[[0-9;]*m")

// Affinity column headers, as nvidia-smi spells them.
const (
	colCPU     = "CPU Affinity"
	colNUMA    = "NUMA Affinity"
	colGPUNUMA = "GPU NUMA ID"
)

// ParseTopo reads the output of `nvidia-smi topo -m` as drivers old and new
// print it: SOC for SYS, NIC columns named NIC# (resolved through the NIC
// Legend) or by device (mlx5_0), with or without NIC rows' affinity cells
// and the CPU Affinity, NUMA Affinity and GPU NUMA ID columns, tabs or
// spaces, trailing spaces, the terminal's underline escapes, text before
// the matrix (a shell prompt) and the legend after it. The matrix must be
// square, symmetric, X on the diagonal, NVLink only between GPUs. GPUs come
// back with their index, CPU affinity and NUMA node only, and Healthy set;
// the caller fills in the rest. Errors are *ParseError, with line and
// column.
func ParseTopo(r io.Reader) (*Topology, error) {
	var lines []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, strings.TrimRight(ansiEscape.ReplaceAllString(sc.Text(), ""), "\r"))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("gpu: reading nvidia-smi topo -m output: %w", err)
	}

	// The header is the first line whose first field is GPU0 and that has
	// no X cell (the GPU0 row has one).
	hl := -1
	for i, l := range lines {
		toks := tokenize(l)
		if len(toks) > 0 && toks[0].s == "GPU0" && !hasX(toks) {
			hl = i
			break
		}
	}
	if hl < 0 {
		return nil, errAt(max(len(lines), 1), 0, "no header row (a line of column names starting with GPU0) found")
	}
	devs, extra, err := parseHeader(hl+1, tokenize(lines[hl]))
	if err != nil {
		return nil, err
	}
	ngpu := 0
	for ngpu < len(devs) && devs[ngpu].s == "GPU"+strconv.Itoa(ngpu) {
		ngpu++
	}
	t := &Topology{Links: make([][]Link, len(devs))}
	for i := range ngpu {
		t.GPUs = append(t.GPUs, GPU{Index: i, NUMANode: -1, Healthy: true})
	}
	for _, d := range devs[ngpu:] {
		if strings.HasPrefix(d.s, "GPU") {
			return nil, errAt(hl+1, d.col, "column %s is out of order: GPU columns run GPU0, GPU1, … before any NIC", d.s)
		}
		t.NICs = append(t.NICs, NIC{Name: d.s, NUMANode: -1})
	}

	// Rows, one per device, in the header's order.
	pos := make([][]token, len(devs)) // where each cell was, for errors
	rowLine := make([]int, len(devs))
	ln := hl + 1
	for i, d := range devs {
		for ln < len(lines) && strings.TrimSpace(lines[ln]) == "" && i == 0 {
			ln++ // a blank line between header and rows: tolerated
		}
		if ln >= len(lines) || strings.TrimSpace(lines[ln]) == "" || strings.HasPrefix(strings.TrimSpace(lines[ln]), "Legend") {
			return nil, errAt(min(ln+1, max(len(lines), 1)), 0, "the matrix ends after %d rows, but the header names %d devices (missing row %s)", i, len(devs), d.s)
		}
		toks := tokenize(lines[ln])
		rowLine[i] = ln + 1
		if toks[0].s != d.s {
			return nil, errAt(ln+1, toks[0].col, "row %q where row %s was expected (rows follow the header's column order)", toks[0].s, d.s)
		}
		cells := toks[1:]
		if len(cells) < len(devs) {
			return nil, errAt(ln+1, len(lines[ln])+1, "row %s has %d link cells, want %d", d.s, len(cells), len(devs))
		}
		pos[i] = cells[:len(devs)]
		t.Links[i] = make([]Link, len(devs))
		for j, c := range pos[i] {
			l, err := ParseLink(c.s)
			if err != nil {
				return nil, errAt(ln+1, c.col, "%s to %s: %v", d.s, devs[j].s, err)
			}
			t.Links[i][j] = l
			if err := checkCell(t.Links, i, j, ngpu, devs, pos, rowLine); err != nil {
				return nil, err
			}
		}
		rest := cells[len(devs):]
		if i >= ngpu {
			if len(rest) > 0 {
				return nil, errAt(ln+1, rest[0].col, "unexpected %q after the link cells of NIC row %s", rest[0].s, d.s)
			}
		} else if err := parseAffinity(&t.GPUs[i], extra, rest, ln+1); err != nil {
			return nil, err
		}
		ln++
	}

	// NIC Legend: "  NIC0: mlx5_0" names the NIC# columns.
	legend := map[string]string{}
	for _, l := range lines[ln:] {
		toks := tokenize(l)
		if len(toks) == 2 && strings.HasPrefix(toks[0].s, "NIC") && strings.HasSuffix(toks[0].s, ":") {
			legend[strings.TrimSuffix(toks[0].s, ":")] = toks[1].s
		}
	}
	for k := range t.NICs {
		if name, ok := legend[t.NICs[k].Name]; ok {
			t.NICs[k].Name = name
		}
	}
	return t, nil
}

// checkCell checks cell (i, j) once rows up to i are read: X on the
// diagonal only, NVLink only between GPUs, and the same link as (j, i)
// when that row is already read.
func checkCell(links [][]Link, i, j, ngpu int, devs []token, pos [][]token, rowLine []int) error {
	l, c := links[i][j], pos[i][j]
	switch {
	case i == j && l.Class != LinkSelf:
		return errAt(rowLine[i], c.col, "%s to itself is %s, want X", devs[i].s, l)
	case i != j && l.Class == LinkSelf:
		return errAt(rowLine[i], c.col, "%s to %s is X, which only a device to itself can be", devs[i].s, devs[j].s)
	case l.Class == LinkNV && (i >= ngpu || j >= ngpu):
		return errAt(rowLine[i], c.col, "%s to %s is %s, but NVLink joins only GPUs", devs[i].s, devs[j].s, l)
	case j < i && links[j][i] != l:
		return errAt(rowLine[i], c.col, "%s to %s is %s, but %s to %s (line %d) is %s", devs[i].s, devs[j].s, l, devs[j].s, devs[i].s, rowLine[j], links[j][i])
	}
	return nil
}

func hasX(toks []token) bool {
	for _, t := range toks {
		if t.s == "X" {
			return true
		}
	}
	return false
}

// parseHeader splits the header into device columns and the affinity
// columns after them (CPU Affinity, NUMA Affinity, GPU NUMA ID, in the
// order given).
func parseHeader(line int, toks []token) (devs []token, extra []string, err error) {
	for i := 0; i < len(toks); i++ {
		name := ""
		for _, h := range []string{colCPU, colNUMA, colGPUNUMA} {
			words := strings.Fields(h)
			if i+len(words) <= len(toks) && joinTokens(toks[i:i+len(words)]) == h {
				name = h
				i += len(words) - 1
				break
			}
		}
		switch {
		case name != "":
			extra = append(extra, name)
		case len(extra) > 0:
			return nil, nil, errAt(line, toks[i].col, "column %q after the affinity columns", toks[i].s)
		default:
			for _, d := range devs {
				if d.s == toks[i].s {
					return nil, nil, errAt(line, toks[i].col, "column %s appears twice", d.s)
				}
			}
			devs = append(devs, toks[i])
		}
	}
	return devs, extra, nil
}

func joinTokens(toks []token) string {
	s := make([]string, len(toks))
	for i, t := range toks {
		s[i] = t.s
	}
	return strings.Join(s, " ")
}

// parseAffinity reads a GPU row's cells after the links. Empty cells do not
// show among fields, so the values are taken in column order.
func parseAffinity(g *GPU, cols []string, vals []token, line int) error {
	if len(vals) > len(cols) {
		return errAt(line, vals[len(cols)].col, "unexpected %q after the last column", vals[len(cols)].s)
	}
	for k, v := range vals {
		if v.s == "N/A" {
			continue
		}
		switch cols[k] {
		case colCPU:
			if !ValidCPUList(v.s) {
				return errAt(line, v.col, "CPU Affinity %q is not a CPU list like 0-55,112-167", v.s)
			}
			g.CPUAffinity = v.s
		case colNUMA:
			// A GPU near several nodes prints a list ("0-1"); the first is
			// the one we keep.
			first := strings.FieldsFunc(v.s, func(r rune) bool { return r == '-' || r == ',' })
			n, err := -1, errors.ErrUnsupported
			if len(first) > 0 {
				n, err = strconv.Atoi(first[0])
			}
			if err != nil || n < 0 {
				return errAt(line, v.col, "NUMA Affinity %q is not a NUMA node number", v.s)
			}
			g.NUMANode = n
		}
	}
	return nil
}

var cpuListRE = regexp.MustCompile(`^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$`)

// ValidCPUList reports whether s is a CPU list in the kernel's format, such
// as "0-55,112-167".
func ValidCPUList(s string) bool { return cpuListRE.MatchString(s) }
