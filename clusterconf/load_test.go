package clusterconf

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/scheduler"
)

const full = `# a whole cluster
[server]
data_dir = "/var/lib/loom"

[scheduler]
policy = "multifactor"
reserve_depth = 4
backfill_window = "2-00:00:00"
default_time = "1:00:00"
max_time = "7-00:00:00"
weight_age = 100
weight_fairshare = 2000.5
weight_qos = 10000
priority_max_age = "1-0"
fairshare_half_life = 10080
priority_favor_small = true

[scheduler.account_shares]
physics = 3
bio = 1

[[qos]]
name = "normal"
priority = 10

[[qos]]
name = "high"
priority = 100
preempt = ["normal"]
max_wall = "2-00:00:00"
max_tres_per_user = "gres/gpu=8,cpu=64"
max_jobs_per_user = 4
max_submit_jobs_per_user = 20

[[partition]]
name = "gpu"
nodes = "gpu[01-16]"
default = true
max_time = "2-00:00:00"
default_time = "30"
state = "up"
allow_qos = "normal,high"
priority_job_factor = 10
preempt_mode = "requeue"
def_mem_per_gpu = "80GB"
def_mem_per_cpu = 2048
private_tmp = true
allow_swap = false

[[partition]]
name = "debug"
features = ["a100"]
max_time = "30:00"
qos = "high"
private_tmp = "false"

[topology]
[[topology.switch]]
name = "s1"
nodes = "gpu[01-08]"
[[topology.switch]]
name = "s2"
nodes = "gpu[09-16]"
[[topology.switch]]
name = "top"
switches = "s[1-2]"
`

func noFiles(string) ([]byte, error) { return nil, fs.ErrNotExist }

func TestParseFull(t *testing.T) {
	c, err := Parse("loom.toml", full, noFiles)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	s := c.Scheduler
	if s.ReserveDepth != 4 || s.BackfillWindowS != 2*86400 || s.DefaultTimeS != 3600 || s.MaxTimeS != 7*86400 {
		t.Errorf("scheduler = %v", s)
	}
	if s.WeightFairshare != 2000.5 || s.PriorityMaxAgeS != 86400 || s.FairshareHalfLifeS != 7*86400 || !s.PriorityFavorSmall {
		t.Errorf("priority = %v", s)
	}
	if s.AccountShares["physics"] != 3 {
		t.Errorf("account_shares = %v", s.AccountShares)
	}
	if len(c.Qos) != 2 || c.Qos[1].MaxGpusPerUser != 8 || c.Qos[1].MaxCpusPerUser != 64 || c.Qos[1].MaxSubmitPerUser != 20 || c.Qos[1].MaxWallS != 2*86400 {
		t.Errorf("qos = %v", c.Qos)
	}
	p := c.Partitions[0]
	if !p.Default || p.State != "UP" || p.DefaultTimeS != 1800 || p.PreemptMode != "REQUEUE" || p.DefMemPerGpuMb != 80*1024 || p.DefMemPerCpuMb != 2048 || len(p.AllowQos) != 2 {
		t.Errorf("partition gpu = %v", p)
	}
	if p.PrivateTmp == nil || !*p.PrivateTmp || p.AllowSwap == nil || *p.AllowSwap {
		t.Errorf("partition gpu: private_tmp=%v allow_swap=%v, want true false", p.PrivateTmp, p.AllowSwap)
	}
	if d := c.Partitions[1]; d.PrivateTmp == nil || *d.PrivateTmp || d.AllowSwap != nil {
		t.Errorf("partition debug: private_tmp=%v allow_swap=%v, want false and unset (the node decides)", d.PrivateTmp, d.AllowSwap)
	}
	if c.Partitions[1].MaxTimeS != 1800 || c.Partitions[1].Features[0] != "a100" {
		t.Errorf("partition debug = %v", c.Partitions[1])
	}
	if len(c.Switches) != 3 {
		t.Errorf("switches = %v", c.Switches)
	}
	sc := ToScheduler(c)
	if sc.DefaultTimeLimit != time.Hour || sc.ReserveDepth != 4 || sc.QOS["high"].Priority != 100 || sc.Priority.PartitionPriority["gpu"] != 10 {
		t.Errorf("ToScheduler = %+v", sc)
	}
	if sc.Network == nil || sc.Network.Leaf("gpu12") != "s2" || sc.Network.Parent("s2") != "top" {
		t.Errorf("ToScheduler network: leaf of gpu12 = %q", sc.Network.Leaf("gpu12"))
	}
	again, _ := Parse("loom.toml", full, noFiles)
	if again.Sha256 != c.Sha256 || len(c.Sha256) != 64 {
		t.Errorf("digest %q then %q, want one 64-hex digest", c.Sha256, again.Sha256)
	}
	changed, _ := Parse("loom.toml", strings.Replace(full, `"1:00:00"`, `"2:00:00"`, 1), noFiles)
	if changed.Sha256 == c.Sha256 {
		t.Error("a changed file kept its digest")
	}
	if d := Diff(c, changed); len(d) != 1 || d[0] != "DefaultTime: 1:00:00 -> 2:00:00" {
		t.Errorf("Diff = %q, want the one DefaultTime line", d)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"unknown scheduler key", "[scheduler]\npolicy = \"fifo\"\ndefault_tme = \"1:00:00\"\n",
			`f.toml:3: [scheduler] default_tme: unknown key`},
		{"wrong type", "[scheduler]\n\nreserve_depth = \"four\"\n",
			`f.toml:3: [scheduler] reserve_depth: "four" is not a whole number`},
		{"bad time", "[scheduler]\ndefault_time = \"1:2:3:4\"\n",
			`f.toml:2: [scheduler] default_time: time "1:2:3:4": too many ':' fields`},
		{"bad policy", "[scheduler]\npolicy = \"sjf\"\n",
			`f.toml:2: [scheduler] policy: "sjf" is not a policy`},
		{"bad share", "[scheduler.account_shares]\nphysics = 2\nbio = \"x\"\n",
			`f.toml:3: [scheduler.account_shares] bio: "x" is not a number`},
		{"unknown qos in preempt", "[[qos]]\nname = \"high\"\npreempt = [\"lo\"]\n[[qos]]\nname = \"low\"\n",
			`f.toml:3: [[qos]] "high" preempt: unknown QoS "lo"`},
		{"duplicate qos", "[[qos]]\nname = \"a\"\n[[qos]]\nname = \"a\"\n",
			`f.toml:4: [[qos]] "a" name: a second QoS of this name`},
		{"qos without name", "[[qos]]\npriority = 3\n",
			`f.toml:1: [[qos]] name: every [[qos]] needs a name`},
		{"bad tres", "[[qos]]\nname = \"a\"\nmax_tres_per_user = \"gres/fpga=2\"\n",
			`f.toml:3: [[qos]] "a" max_tres_per_user: TRES "gres/fpga" is not limited here`},
		{"two defaults", "[[partition]]\nname = \"a\"\ndefault = true\n[[partition]]\nname = \"b\"\ndefault = true\n",
			`f.toml:6: [[partition]] "b" default: partition "a" is the default already`},
		{"duplicate partition", "[[partition]]\nname = \"a\"\n\n[[partition]]\nname = \"a\"\n",
			`f.toml:5: [[partition]] "a" name: a second partition of this name`},
		{"bad state", "[[partition]]\nname = \"a\"\nstate = \"OPEN\"\n",
			`f.toml:3: [[partition]] "a" state: "OPEN" is not one of UP, DOWN, DRAIN, INACTIVE`},
		{"bad preempt mode", "[[partition]]\nname = \"a\"\npreempt_mode = \"suspend\"\n",
			`f.toml:3: [[partition]] "a" preempt_mode: "suspend" is not one of OFF, REQUEUE, CANCEL`},
		{"bad size", "[[partition]]\nname = \"a\"\ndef_mem_per_gpu = \"80X\"\n",
			`f.toml:3: [[partition]] "a" def_mem_per_gpu: "80X" is not a size`},
		{"bad hostlist", "[[partition]]\nname = \"a\"\nnodes = \"gpu[01-\"\n",
			`f.toml:3: [[partition]] "a" nodes:`},
		{"partition qos unknown", "[[partition]]\nname = \"a\"\nqos = \"gold\"\n",
			`f.toml:3: [[partition]] "a" qos: unknown QoS "gold"`},
		{"bad private_tmp", "[[partition]]\nname = \"a\"\nprivate_tmp = \"sometimes\"\n",
			`f.toml:3: [[partition]] "a" private_tmp: "sometimes" is not true or false`},
		{"bad allow_swap", "[[partition]]\nname = \"a\"\nallow_swap = 1\n",
			`f.toml:3: [[partition]] "a" allow_swap: want true or false, not`},
		{"unknown partition key", "[[partition]]\nname = \"a\"\nmaxtime = \"1:00\"\n",
			`f.toml:3: [[partition]] "a" maxtime: unknown key`},
		{"partition as table", "[partition]\nname = \"a\"\n",
			`f.toml:1: partition: write each as a [[partition]] table`},
		{"switch cycle", "[topology]\n[[topology.switch]]\nname = \"a\"\nswitches = \"b\"\n[[topology.switch]]\nname = \"b\"\nswitches = \"a\"\n",
			`f.toml:7: [[topology.switch]] "b" switches: switch a is its own ancestor (a cycle through a)`},
		{"undefined child", "[topology]\n[[topology.switch]]\nname = \"a\"\nswitches = \"b\"\n",
			`switch a names child switch b, which is not defined`},
		{"both topologies", "[topology]\ntopology_conf = \"t.conf\"\n[[topology.switch]]\nname = \"a\"\n",
			`f.toml:2: [topology] topology_conf: give topology_conf or [[topology.switch]] tables, not both`},
		{"missing topology.conf", "[topology]\ntopology_conf = \"/nonexistent/t.conf\"\n",
			`f.toml:2: [topology] topology_conf:`},
		{"toml syntax", "[scheduler]\npolicy = fifo\n",
			`f.toml:2: `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f.toml", tc.text, noFiles)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) && !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse(%q) = %v, want %q", tc.text, err, tc.want)
			}
			var ce *Error
			if err != nil && !errors.As(err, &ce) {
				t.Errorf("Parse(%q) error is a %T, want *Error", tc.text, err)
			}
		})
	}
}

func TestTopologyConf(t *testing.T) {
	files := map[string]string{
		"/etc/loom/topology.conf": "# tree\nSwitchName=s1 Nodes=n[1-2]\nSwitchName=s2 Nodes=n[3-4]\nSwitchName=top Switches=s[1-2]\n",
		"/etc/loom/bad.conf":      "SwitchName=s1 Nodes=n1\nSwitchName=s2 Nodes=n1\n",
	}
	read := func(p string) ([]byte, error) {
		if s, ok := files[p]; ok {
			return []byte(s), nil
		}
		return nil, fs.ErrNotExist
	}
	c, err := Parse("/etc/loom/loom.toml", "[topology]\ntopology_conf = \"topology.conf\"\n", read)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if n := ToScheduler(c).Network; n == nil || n.Leaf("n3") != "s2" || n.Parent("s1") != "top" {
		t.Errorf("network from topology.conf = %v", c.Switches)
	}
	other, _ := Parse("/etc/loom/loom.toml", "[topology]\ntopology_conf = \"topology.conf\"\n", func(p string) ([]byte, error) {
		return []byte("SwitchName=s1 Nodes=n[1-4]\n"), nil
	})
	if other.Sha256 == c.Sha256 {
		t.Error("a changed topology.conf kept the digest")
	}
	_, err = Parse("/etc/loom/loom.toml", "[topology]\ntopology_conf = \"bad.conf\"\n", read)
	if want := "/etc/loom/bad.conf:2: SwitchName=s2: node n1 is under both s1 and s2"; err == nil || err.Error() != want {
		t.Errorf("Parse(bad.conf) = %v, want %q", err, want)
	}
}

func TestOverrides(t *testing.T) {
	c, err := Parse("f.toml", "[scheduler]\npolicy = \"fifo\"\nlas_within = \"limit\"\n", noFiles)
	if err != nil {
		t.Fatal(err)
	}
	before := c.Sha256
	if err := ApplyOverrides(c, []Override{{"policy", "las"}, {"las_min_run", "-1s"}, {"las_preempt", "false"}}); err != nil {
		t.Fatal(err)
	}
	if c.Sha256 == before {
		t.Error("overrides kept the digest")
	}
	sc := ToScheduler(c)
	if sc.Order != scheduler.OrderLeastAttained || sc.LAS.WithinQueue != scheduler.QueueShortestLimit || sc.LAS.MinRun >= 0 || sc.LAS.Preempt != scheduler.PreemptNever {
		t.Errorf("ToScheduler after overrides = %+v", sc)
	}
	if err := ApplyOverrides(c, []Override{{"policy", "sjf"}}); err == nil || !strings.Contains(err.Error(), "--scheduler-policy") {
		t.Errorf("ApplyOverrides(policy=sjf) = %v, want an error naming --scheduler-policy", err)
	}
}

func TestSettingsDefaults(t *testing.T) {
	got := map[string]string{}
	for _, s := range Settings(nil) {
		got[s.Key] = s.Value
	}
	for k, want := range map[string]string{"SchedulerType": "multifactor", "PriorityWeightAge": "1000", "SchedulerReserveDepth": "8", "DefaultTime": "UNLIMITED", "PriorityDecayHalfLife": "7-00:00:00"} {
		if got[k] != want {
			t.Errorf("Settings(nil)[%s] = %q, want %q", k, got[k], want)
		}
	}
}

// The [scheduler] keys that were only flags before keep their meaning:
// test/preempt's file, with a negative promote factor, still reads.
func TestFlagKeysKeepTheirMeaning(t *testing.T) {
	c, err := Parse("f.toml", "[scheduler]\npolicy = \"las\"\nlas_thresholds = [20]\nlas_min_run = \"1s\"\nlas_promote_factor = -1\n", noFiles)
	if err != nil {
		t.Fatal(err)
	}
	sc := ToScheduler(c)
	if sc.Order != scheduler.OrderLeastAttained || len(sc.LAS.Thresholds) != 1 || sc.LAS.MinRun != time.Second || sc.LAS.PromoteFactor != -1 {
		t.Errorf("ToScheduler = %+v", sc.LAS)
	}
	if err := ApplyOverrides(c, []Override{{"las_promote_factor", "-2"}}); err != nil || ToScheduler(c).LAS.PromoteFactor != -2 {
		t.Errorf("--scheduler-las-promote-factor=-2: %v, factor %v", err, ToScheduler(c).LAS.PromoteFactor)
	}
}

// TestGittinsKeys: [scheduler] takes policy "gittins" and its settings,
// the same as --scheduler-policy and --scheduler-gittins-* do, and
// refuses a margin below 1.
func TestGittinsKeys(t *testing.T) {
	c, err := Parse("f.toml", "[scheduler]\npolicy = \"gittins\"\ngittins_margin = 8\nhistory_window = 500\nhistory_min_samples = 5\nhistory_siblings = \"-1s\"\nlas_promote_factor = 32\n", noFiles)
	if err != nil {
		t.Fatal(err)
	}
	sc := ToScheduler(c)
	if sc.Order != scheduler.OrderGittins || sc.LAS.GittinsMargin != 8 || sc.LAS.HistoryWindow != 500 ||
		sc.LAS.HistoryMinSamples != 5 || sc.LAS.SiblingWindow >= 0 || sc.LAS.PromoteFactor != 32 {
		t.Errorf("ToScheduler = %v %+v", sc.Order, sc.LAS)
	}
	if err := ApplyOverrides(c, []Override{{"gittins_margin", "2"}}); err != nil || ToScheduler(c).LAS.GittinsMargin != 2 {
		t.Errorf("--scheduler-gittins-margin=2: %v, margin %v", err, ToScheduler(c).LAS.GittinsMargin)
	}
	_, err = Parse("f.toml", "[scheduler]\npolicy = \"gittins\"\n\ngittins_margin = 0.5\n", noFiles)
	if err == nil || !strings.Contains(err.Error(), "f.toml:4: [scheduler] gittins_margin:") {
		t.Errorf("margin 0.5: %v, want an error at f.toml:4 naming gittins_margin", err)
	}
}
