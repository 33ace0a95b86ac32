package simcmd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMainGenericCSV(t *testing.T) {
	dir := t.TempDir()
	trace := filepath.Join(dir, "t.csv")
	if err := os.WriteFile(trace, []byte("when,len,n,who\n2020-01-01 00:00:00,60,1,a\n2020-01-01 00:00:10,60,2,b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := Main([]string{"--trace", trace, "--columns", "submit=when,duration=len,gpus=n,user=who", "--nodes", "1", "--out", filepath.Join(dir, "jobs.csv")}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"jobs=2\n", "avg_jct_s=60\n", "gpu_util="} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "jobs.csv"))
	if err != nil || strings.Count(string(b), "\n") != 3 {
		t.Fatalf("jobs.csv: %v, %q", err, b)
	}
}
