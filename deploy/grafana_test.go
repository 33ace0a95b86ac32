package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// datasourceFile is Grafana's data source provisioning format, the fields
// the dashboards depend on.
type datasourceFile struct {
	APIVersion  int `yaml:"apiVersion"`
	Datasources []struct {
		Name string `yaml:"name"`
		UID  string `yaml:"uid"`
		Type string `yaml:"type"`
		URL  string `yaml:"url"`
	} `yaml:"datasources"`
}

// providerFile is Grafana's dashboard provisioning format.
type providerFile struct {
	APIVersion int `yaml:"apiVersion"`
	Providers  []struct {
		Name    string `yaml:"name"`
		Type    string `yaml:"type"`
		Options struct {
			Path string `yaml:"path"`
		} `yaml:"options"`
	} `yaml:"providers"`
}

// dsRef is a panel's or target's data source: a uid, or a variable
// (${name} or $name) that a datasource-type template variable resolves.
type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	Title      string  `json:"title"`
	Type       string  `json:"type"`
	Datasource *dsRef  `json:"datasource"`
	Panels     []panel `json:"panels"` // a collapsed row's panels
	Targets    []struct {
		Expr       string `json:"expr"`
		Datasource *dsRef `json:"datasource"`
	} `json:"targets"`
}

type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name    string `json:"name"`
			Type    string `json:"type"`
			Query   string `json:"query"`
			Current struct {
				Value string `json:"value"`
			} `json:"current"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

// checkDashboard returns what in d does not fit the provisioned data
// sources (uid to type): a panel without a data source, one whose uid is
// not provisioned or whose variable does not default to a provisioned one,
// or a panel without a query.
func checkDashboard(d dashboard, provisioned map[string]string) []error {
	var errs []error
	if d.UID == "" || d.Title == "" {
		errs = append(errs, fmt.Errorf("dashboard %q: uid and title are required", d.Title))
	}
	vars := map[string]string{} // datasource variable -> the uid it defaults to
	for _, v := range d.Templating.List {
		if v.Type != "datasource" {
			continue
		}
		uid := v.Current.Value
		if typ, ok := provisioned[uid]; !ok || typ != v.Query {
			errs = append(errs, fmt.Errorf("variable %q: defaults to data source %q, want a provisioned %s data source", v.Name, uid, v.Query))
		}
		vars[v.Name] = uid
	}
	resolve := func(where string, ds *dsRef) {
		if ds == nil || ds.UID == "" {
			errs = append(errs, fmt.Errorf("%s: no datasource", where))
			return
		}
		uid := ds.UID
		if name, ok := strings.CutPrefix(uid, "$"); ok {
			name = strings.TrimSuffix(strings.TrimPrefix(name, "{"), "}")
			v, ok := vars[name]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: datasource %q names no datasource variable", where, ds.UID))
				return
			}
			uid = v
		}
		typ, ok := provisioned[uid]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: datasource uid %q is not provisioned", where, uid))
			return
		}
		if ds.Type != "" && ds.Type != typ {
			errs = append(errs, fmt.Errorf("%s: datasource type %q, the provisioned %q is %s", where, ds.Type, uid, typ))
		}
	}
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			where := fmt.Sprintf("panel %q", p.Title)
			resolve(where, p.Datasource)
			if len(p.Targets) == 0 {
				errs = append(errs, fmt.Errorf("%s: no targets", where))
			}
			for i, t := range p.Targets {
				if strings.TrimSpace(t.Expr) == "" {
					errs = append(errs, fmt.Errorf("%s: target %d: empty expr", where, i))
				}
				if t.Datasource != nil {
					resolve(fmt.Sprintf("%s: target %d", where, i), t.Datasource)
				}
			}
		}
	}
	walk(d.Panels)
	return errs
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// provisionedDatasources reads the shipped data source provisioning file
// and returns its data sources, uid to type.
func provisionedDatasources(t *testing.T) map[string]string {
	t.Helper()
	var f datasourceFile
	readYAML(t, filepath.Join("grafana", "provisioning", "datasources", "loom.yml"), &f)
	if f.APIVersion != 1 {
		t.Errorf("datasources: apiVersion = %d, want 1", f.APIVersion)
	}
	out := map[string]string{}
	for i, ds := range f.Datasources {
		if ds.Name == "" || ds.UID == "" || ds.Type == "" || ds.URL == "" {
			t.Errorf("datasources[%d]: name, uid, type and url are required: %+v", i, ds)
		}
		if _, dup := out[ds.UID]; dup {
			t.Errorf("datasources[%d]: uid %q provisioned twice", i, ds.UID)
		}
		out[ds.UID] = ds.Type
	}
	if len(out) == 0 {
		t.Fatal("datasources: none provisioned")
	}
	return out
}

// TestGrafanaProvisioning: the shipped provider loads the dashboards
// directory, and every shipped dashboard's panels use a provisioned data
// source and have a query.
func TestGrafanaProvisioning(t *testing.T) {
	provisioned := provisionedDatasources(t)

	var pf providerFile
	readYAML(t, filepath.Join("grafana", "provisioning", "dashboards", "loom.yml"), &pf)
	if pf.APIVersion != 1 || len(pf.Providers) != 1 {
		t.Fatalf("dashboard providers: apiVersion %d, %d providers; want 1 and 1", pf.APIVersion, len(pf.Providers))
	}
	if p := pf.Providers[0]; p.Type != "file" || !filepath.IsAbs(p.Options.Path) {
		t.Errorf("dashboard provider %q: type %q path %q, want a file provider with an absolute path", p.Name, p.Type, p.Options.Path)
	}

	files, err := filepath.Glob(filepath.Join("grafana", "dashboards", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in grafana/dashboards (%v)", err)
	}
	uids := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if other, dup := uids[d.UID]; dup {
			t.Errorf("%s: uid %q is also %s's", f, d.UID, other)
		}
		uids[d.UID] = f
		if len(d.Panels) == 0 {
			t.Errorf("%s: no panels", f)
		}
		for _, err := range checkDashboard(d, provisioned) {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestCheckDashboard: the check above finds each kind of mistake.
func TestCheckDashboard(t *testing.T) {
	provisioned := map[string]string{"loom-prometheus": "prometheus"}
	const good = `{"uid": "d", "title": "D",
		"templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus", "current": {"value": "loom-prometheus"}}]},
		"panels": [
			{"type": "row", "title": "R", "panels": [
				{"type": "stat", "title": "in a row", "datasource": {"type": "prometheus", "uid": "${datasource}"}, "targets": [{"expr": "up"}]}]},
			{"type": "stat", "title": "direct", "datasource": {"type": "prometheus", "uid": "loom-prometheus"}, "targets": [{"expr": "up"}]},
			{"type": "stat", "title": "bare variable", "datasource": {"uid": "$datasource"}, "targets": [{"expr": "up"}]}]}`
	tests := []struct {
		name, from, to string
		want           string // in the first error; empty for none
	}{
		{"good", "", "", ""},
		{"no datasource", `"title": "direct", "datasource": {"type": "prometheus", "uid": "loom-prometheus"},`, `"title": "direct",`, `panel "direct": no datasource`},
		{"unprovisioned uid", `"uid": "loom-prometheus"}, "targets"`, `"uid": "other"}, "targets"`, `uid "other" is not provisioned`},
		{"wrong type", `{"type": "prometheus", "uid": "loom-prometheus"}`, `{"type": "loki", "uid": "loom-prometheus"}`, `type "loki"`},
		{"unknown variable", `"$datasource"`, `"$ds"`, `names no datasource variable`},
		{"variable defaults elsewhere", `"current": {"value": "loom-prometheus"}`, `"current": {"value": "grafana"}`, `variable "datasource": defaults to data source "grafana"`},
		{"no targets", `"title": "in a row", "datasource": {"type": "prometheus", "uid": "${datasource}"}, "targets": [{"expr": "up"}]`, `"title": "in a row", "datasource": {"type": "prometheus", "uid": "${datasource}"}`, `panel "in a row": no targets`},
		{"empty expr", `"title": "bare variable", "datasource": {"uid": "$datasource"}, "targets": [{"expr": "up"}]`, `"title": "bare variable", "datasource": {"uid": "$datasource"}, "targets": [{"expr": " "}]`, `empty expr`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := strings.Replace(good, tt.from, tt.to, 1)
			if tt.from != "" && src == good {
				t.Fatalf("the case does not apply: %q not in the dashboard", tt.from)
			}
			var d dashboard
			if err := json.Unmarshal([]byte(src), &d); err != nil {
				t.Fatal(err)
			}
			errs := checkDashboard(d, provisioned)
			if tt.want == "" {
				if len(errs) != 0 {
					t.Fatalf("checkDashboard(good) = %v, want no errors", errs)
				}
				return
			}
			if len(errs) == 0 || !strings.Contains(errs[0].Error(), tt.want) {
				t.Fatalf("checkDashboard = %v, want a first error containing %q", errs, tt.want)
			}
		})
	}
}
