package main

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/scheduler"
)

// [scheduler] policy = "gittins" takes the las preemption settings and
// its own; a margin below 1 or a window below 1 is refused.
func TestSchedulerGittins(t *testing.T) {
	parse := func(text string) (scheduler.Config, error) {
		fs := flag.NewFlagSet("loom server", flag.ContinueOnError)
		fs.SetOutput(new(strings.Builder))
		build := schedulerFlags(fs)
		args := []string{"--config", writeConfig(t, text)}
		if err := applyConfig(fs, "server", args); err != nil {
			return scheduler.Config{}, err
		}
		if err := fs.Parse(args); err != nil {
			return scheduler.Config{}, err
		}
		return build(), nil
	}
	c, err := parse("[scheduler]\npolicy = \"gittins\"\nlas_min_run = \"2m\"\ngittins_margin = 2\nhistory_window = 500\nhistory_min_samples = 5\nhistory_siblings = \"30m\"\n")
	if err != nil {
		t.Fatal(err)
	}
	want := scheduler.LASConfig{MinRun: 2 * time.Minute, GittinsMargin: 2, HistoryWindow: 500, HistoryMinSamples: 5, SiblingWindow: 30 * time.Minute}
	if c.Order != scheduler.OrderGittins || c.LAS.MinRun != want.MinRun || c.LAS.GittinsMargin != want.GittinsMargin ||
		c.LAS.HistoryWindow != want.HistoryWindow || c.LAS.HistoryMinSamples != want.HistoryMinSamples || c.LAS.SiblingWindow != want.SiblingWindow {
		t.Fatalf("scheduler config = %+v, want order gittins and %+v", c, want)
	}
	for _, bad := range []string{"gittins_margin = 0.5", "history_window = 0", "history_min_samples = -3"} {
		if _, err := parse("[scheduler]\npolicy = \"gittins\"\n" + bad + "\n"); err == nil || !strings.Contains(err.Error(), strings.Fields(bad)[0]) {
			t.Errorf("%s: err = %v, want an error naming it", bad, err)
		}
	}
}
