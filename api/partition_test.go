package api

import (
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
)

func TestApplyPartition(t *testing.T) {
	pt := NewPartitionTable([]*PartitionConfig{
		{Name: "ml", AllowGroups: []string{"ml"}, AllowQos: []string{"normal", "high"}, DenyAccounts: []string{"guest"},
			DefMemPerCpuMb: 1000, DefMemPerGpuMb: 9000},
		{Name: "open", AllowGroups: []string{"ALL"}},
	})
	inML := func(g string) bool { return g == "ml" }
	tests := []struct {
		name    string
		spec    *JobSpec
		inGroup func(string) bool
		want    string // error, or "" for accepted
		check   func(*JobSpec) bool
	}{
		{"no default partition", &JobSpec{}, nil, "--partition: no partition given and none is the default; name one of ml, open", nil},
		{"a member of AllowGroups", &JobSpec{Partition: "ml"}, inML, "", nil},
		{"not a member", &JobSpec{Partition: "ml"}, func(string) bool { return false }, "--partition=ml: none of your groups may use it (AllowGroups=ml)", nil},
		{"no group check in the FSM", &JobSpec{Partition: "ml"}, nil, "", nil},
		{"AllowGroups=ALL", &JobSpec{Partition: "open"}, func(string) bool { return false }, "", nil},
		{"a denied account", &JobSpec{Partition: "ml", Account: "guest"}, nil, `--partition=ml: account "guest" may not use it (DenyAccounts=guest)`, nil},
		{"a denied user, with no --account", &JobSpec{Partition: "ml"}, nil, `--partition=ml: account "guest" may not use it (DenyAccounts=guest)`, nil},
		{"a QoS not allowed", &JobSpec{Partition: "ml", Qos: "low"}, nil, `--partition=ml: QoS "low" may not use it (AllowQos=normal,high)`, nil},
		{"no QoS is normal", &JobSpec{Partition: "ml"}, nil, "", nil},
		{"DefMemPerCPU without GPUs", &JobSpec{Partition: "ml"}, nil, "", func(s *JobSpec) bool { return s.MemPerCpuMb == 1000 && s.MemPerGpuMb == 0 }},
		{"DefMemPerGPU with GPUs", &JobSpec{Partition: "ml", Gpus: 2}, nil, "", func(s *JobSpec) bool { return s.MemPerGpuMb == 9000 && s.MemPerCpuMb == 0 }},
		{"the job's own --mem-per-cpu", &JobSpec{Partition: "ml", Gpus: 2, MemPerCpuMb: 5}, nil, "", func(s *JobSpec) bool { return s.MemPerGpuMb == 0 && s.MemPerCpuMb == 5 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user := "ann"
			if tt.name == "a denied user, with no --account" {
				user = "guest"
			}
			got, err := pt.ApplyPartition(tt.spec, SubmitCaller{User: user, InGroup: tt.inGroup})
			if tt.want != "" {
				if err == nil || err.Error() != tt.want {
					t.Fatalf("ApplyPartition = %v, want %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("ApplyPartition: %v", err)
			}
			if tt.check != nil && !tt.check(got) {
				t.Errorf("ApplyPartition = %v", got)
			}
		})
	}
	var none *PartitionTable
	if s, err := none.ApplyPartition(&JobSpec{Partition: "x"}, SubmitCaller{}); err != nil || s.Partition != "x" {
		t.Errorf("no partitions configured: %v, %v; want the spec as it is", s, err)
	}
	if _, err := none.ApplyPartition(&JobSpec{Partition: "a,b"}, SubmitCaller{}); err == nil || !strings.Contains(err.Error(), "one partition only") {
		t.Errorf("-p a,b with no partitions configured: %v, want refused", err)
	}
}

// TestApplyPartitionIsolation checks that a job takes its partition's
// private_tmp and allow_swap, and never the request's own.
func TestApplyPartitionIsolation(t *testing.T) {
	pt := NewPartitionTable([]*PartitionConfig{
		{Name: "shared", PrivateTmp: proto.Bool(true), AllowSwap: proto.Bool(false)},
		{Name: "scratch", PrivateTmp: proto.Bool(false), AllowSwap: proto.Bool(true)},
		{Name: "plain"},
	})
	show := func(b *bool) string {
		if b == nil {
			return "unset"
		}
		return strconv.FormatBool(*b)
	}
	tests := []struct {
		spec              *JobSpec
		wantTmp, wantSwap string
	}{
		{&JobSpec{Partition: "shared"}, "true", "false"},
		{&JobSpec{Partition: "scratch"}, "false", "true"},
		{&JobSpec{Partition: "plain"}, "unset", "unset"},
		{&JobSpec{Partition: "shared", PrivateTmp: proto.Bool(false), AllowSwap: proto.Bool(true)}, "true", "false"},
		{&JobSpec{Partition: "plain", PrivateTmp: proto.Bool(false), AllowSwap: proto.Bool(true)}, "unset", "unset"},
	}
	for _, tt := range tests {
		got, err := pt.ApplyPartition(tt.spec, SubmitCaller{User: "ann"})
		if err != nil {
			t.Fatalf("ApplyPartition(%v): %v", tt.spec, err)
		}
		if show(got.PrivateTmp) != tt.wantTmp || show(got.AllowSwap) != tt.wantSwap {
			t.Errorf("ApplyPartition(%v): private_tmp=%s allow_swap=%s, want %s %s", tt.spec, show(got.PrivateTmp), show(got.AllowSwap), tt.wantTmp, tt.wantSwap)
		}
		if tt.spec.PrivateTmp == nil && got.PrivateTmp != nil {
			*got.PrivateTmp = !*got.PrivateTmp // must not reach the table's value
		}
	}
	if got, _ := pt.ApplyPartition(&JobSpec{Partition: "shared"}, SubmitCaller{}); !got.GetPrivateTmp() {
		t.Errorf("changing a stamped spec changed the partition's private_tmp")
	}
	var none *PartitionTable
	got, err := none.ApplyPartition(&JobSpec{PrivateTmp: proto.Bool(false), AllowSwap: proto.Bool(true)}, SubmitCaller{})
	if err != nil || got.PrivateTmp != nil || got.AllowSwap != nil {
		t.Errorf("no partitions configured: %v, %v; want private_tmp and allow_swap dropped", got, err)
	}
}
