package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// metricSources are the packages that register Loom's metrics: the
// server's, the agent's and the GPU collector's.
var metricSources = []string{"../server", "../agent", "../gpu/metrics"}

// registeredName is a metric name as the code registers it: a string
// literal starting loom_ or DCGM_ (prometheus.NewDesc and the Name of
// counter and histogram options).
var registeredName = regexp.MustCompile(`"((?:loom|DCGM)_[A-Za-z0-9_]+)"`)

// exportedMetrics collects the names the code registers, with the
// _bucket, _sum and _count series of histograms, the recording rules'
// names, and Prometheus' own up.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	known := map[string]bool{"up": true}
	for _, dir := range metricSources {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no Go files in %s (%v)", dir, err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range registeredName.FindAllStringSubmatch(string(b), -1) {
				for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
					known[m[1]+suffix] = true
				}
			}
		}
	}
	for _, r := range ruleFile(t).rules() {
		if r.Record != "" {
			known[r.Record] = true
		}
	}
	return known
}

type rule struct {
	Record string `yaml:"record"`
	Alert  string `yaml:"alert"`
	Expr   string `yaml:"expr"`
}

type rulesFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

func (f rulesFile) rules() []rule {
	var out []rule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

func ruleFile(t *testing.T) rulesFile {
	t.Helper()
	var f rulesFile
	readYAML(t, filepath.Join("prometheus", "rules.yml"), &f)
	return f
}

var (
	promString = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	// A matcher list, a range or subquery, and the label lists of by,
	// without, on, ignoring and group_left/right.
	promBraces = regexp.MustCompile(`\{[^{}]*\}|\[[^\]]*\]`)
	promLabels = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promIdent  = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	// Grafana's variables, which the e2e test replaces by durations.
	grafanaVar = regexp.MustCompile(`\$\{?__[a-z_]+\}?`)
)

// promKeywords are PromQL words that are not metric names.
var promKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
	"inf": true, "nan": true, "Inf": true, "NaN": true,
}

// queryMetrics returns the metric names expr selects: the identifiers
// left once strings, matchers, ranges, label lists, function calls,
// keywords and numbers are taken out.
func queryMetrics(expr string) []string {
	s := grafanaVar.ReplaceAllString(expr, "1m")
	s = promString.ReplaceAllString(s, `""`)
	s = promBraces.ReplaceAllString(s, " ")
	s = promLabels.ReplaceAllString(s, " ")
	var out []string
	for _, loc := range promIdent.FindAllStringIndex(s, -1) {
		name := s[loc[0]:loc[1]]
		rest := strings.TrimLeft(s[loc[1]:], " \t\n")
		if promKeywords[name] || strings.HasPrefix(rest, "(") {
			continue // a keyword, or a function or aggregation
		}
		if loc[0] > 0 && (s[loc[0]-1] >= '0' && s[loc[0]-1] <= '9' || s[loc[0]-1] == '.') {
			continue // the exponent or unit of a number (1e3, 5m)
		}
		out = append(out, name)
	}
	return out
}

// checkMetrics returns an error for every metric a query of d selects
// that is not in known.
func checkMetrics(d dashboard, known map[string]bool) []error {
	var errs []error
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			for i, tg := range p.Targets {
				for _, m := range queryMetrics(tg.Expr) {
					if !known[m] {
						errs = append(errs, fmt.Errorf("panel %q: target %d: metric %s is not one Loom exports (query %q)", p.Title, i, m, tg.Expr))
					}
				}
			}
		}
	}
	walk(d.Panels)
	return errs
}

// TestDashboardMetricsExist: every metric a shipped panel or rule queries
// is one the code registers (or a recording rule makes), so renaming a
// metric without its dashboards fails here.
func TestDashboardMetricsExist(t *testing.T) {
	known := exportedMetrics(t)
	for _, want := range []string{"loom_job_gpu_seconds_total", "loom_raft_apply_duration_seconds_bucket", "DCGM_FI_DEV_GPU_UTIL", "user_account:loom_job_gpu_seconds:rate5m"} {
		if !known[want] {
			t.Fatalf("the scan of %v missed %s: the lint would pass anything", metricSources, want)
		}
	}
	files, err := filepath.Glob(filepath.Join("grafana", "dashboards", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards (%v)", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, err := range checkMetrics(d, known) {
			t.Errorf("%s: %v", f, err)
		}
	}
	for _, r := range ruleFile(t).rules() {
		for _, m := range queryMetrics(r.Expr) {
			if !known[m] {
				t.Errorf("rules.yml: %s%s: metric %s is not one Loom exports", r.Alert, r.Record, m)
			}
		}
	}
}

func TestQueryMetrics(t *testing.T) {
	tests := []struct {
		expr string
		want string
	}{
		{`max(loom_gpus{state="allocated"}) / sum(max by (state) (loom_gpus))`, "loom_gpus loom_gpus"},
		{`sum by (hpc_job, user) (DCGM_FI_DEV_GPU_UTIL{hpc_job!=""} < bool 10)`, "DCGM_FI_DEV_GPU_UTIL"},
		{`histogram_quantile(0.99, sum by (le, command) (rate(loom_raft_apply_duration_seconds_bucket[5m])))`, "loom_raft_apply_duration_seconds_bucket"},
		{`sum(max by (user, account) (increase(loom_job_gpu_seconds_total[$__range]))) / 3600`, "loom_job_gpu_seconds_total"},
		{`max(loom_nodes{state="DOWN"}) or vector(0)`, "loom_nodes"},
		{`sum by (user) (user_account:loom_job_gpu_seconds:rate5m) > 1e3`, "user_account:loom_job_gpu_seconds:rate5m"},
		{`a and on (node) group_left (x) b offset 5m unless c`, "a b c"},
	}
	for _, tt := range tests {
		if got := strings.Join(queryMetrics(tt.expr), " "); got != tt.want {
			t.Errorf("queryMetrics(%q) = %q, want %q", tt.expr, got, tt.want)
		}
	}
}

// TestCheckMetrics: a panel querying a metric nobody exports is caught.
func TestCheckMetrics(t *testing.T) {
	known := map[string]bool{"loom_gpus": true}
	var d dashboard
	if err := json.Unmarshal([]byte(`{"panels": [{"type": "row", "title": "R", "panels": [
		{"title": "good", "targets": [{"expr": "max by (state) (loom_gpus)"}]},
		{"title": "renamed", "targets": [{"expr": "sum(loom_gpus_total{state=\"idle\"})"}]}]}]}`), &d); err != nil {
		t.Fatal(err)
	}
	errs := checkMetrics(d, known)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), `panel "renamed": target 0: metric loom_gpus_total is not one Loom exports`) {
		t.Fatalf("checkMetrics = %v, want one error naming loom_gpus_total in panel \"renamed\"", errs)
	}
}
