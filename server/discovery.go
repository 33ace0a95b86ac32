package server

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/loomhpc/loom/api"
)

// Prometheus HTTP service discovery. Every server answers
// GET /v1/sd/agents and /v1/sd/servers on its metrics port with the
// targets the replicated state knows of, in the format Prometheus'
// http_sd_configs reads: a JSON list of {"targets": [...], "labels": {...}}.
// A node or server that serves no metrics is left out. deploy/prometheus
// has a scrape configuration that uses both.

// sdGroup is one target group.
type sdGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

func (s *Server) serveSDAgents(w http.ResponseWriter, r *http.Request) {
	groups := []sdGroup{}
	snap := s.State()
	table := api.PartitionsOf(snap.Config())
	for n := range snap.Nodes() {
		if n.MetricsAddress == "" {
			continue
		}
		parts := table.Of(n)
		labels := map[string]string{
			"__meta_loom_node":       n.Name,
			"__meta_loom_state":      strings.ToLower(strings.TrimPrefix(n.State.String(), "NODE_")),
			"__meta_loom_partitions": "," + strings.Join(parts, ",") + ",",
			"__meta_loom_version":    n.Version,
		}
		if n.LeafSwitch != "" {
			labels["__meta_loom_leaf_switch"] = n.LeafSwitch
		}
		keys := make([]string, 0, len(n.Labels))
		for k := range n.Labels {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			labels["__meta_loom_label_"+sdLabelName(k)] = n.Labels[k]
		}
		groups = append(groups, sdGroup{Targets: []string{n.MetricsAddress}, Labels: labels})
	}
	writeSD(w, r, groups)
}

func (s *Server) serveSDServers(w http.ResponseWriter, r *http.Request) {
	groups := []sdGroup{}
	_, leader := s.raft.Leader()
	for sv := range s.State().Servers() {
		if sv.MetricsAddr == "" {
			continue
		}
		groups = append(groups, sdGroup{Targets: []string{sv.MetricsAddr}, Labels: map[string]string{
			"__meta_loom_server": sv.Id,
			"__meta_loom_leader": strconv.FormatBool(sv.Id == leader),
		}})
	}
	writeSD(w, r, groups)
}

func writeSD(w http.ResponseWriter, r *http.Request, groups []sdGroup) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(groups)
}

// sdLabelName makes a node label key a valid Prometheus label name.
func sdLabelName(k string) string {
	b := []byte(k)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}
