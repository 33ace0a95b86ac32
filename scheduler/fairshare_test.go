package scheduler

import (
	"math"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
)

// TestFairShareFactors: with equal shares, an account that used all the
// recorded usage gets 2^(-1/0.5) = 0.25, one that used none 1, and with
// shares 3:1 the heavy user's normalized share is 0.75: 2^(-1/0.75).
func TestFairShareFactors(t *testing.T) {
	v := &View{
		AccountUsage: map[string]float64{"vision": 3600},
		Jobs:         []*api.Job{{Id: 1, User: "bob", State: api.JobState_PENDING, Spec: &api.JobSpec{Account: "nlp"}}},
	}
	now := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name   string
		shares map[string]float64
		want   map[string]float64
	}{
		{"equal shares", nil, map[string]float64{"vision": 0.25, "nlp": 1}},
		{"vision holds 3 of 4 shares", map[string]float64{"vision": 3, "nlp": 1}, map[string]float64{"vision": math.Exp2(-1 / 0.75), "nlp": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{}
			cfg.Priority.Shares = tt.shares
			got := FairShareFactors(v, now, cfg)
			if len(got) != len(tt.want) {
				t.Fatalf("FairShareFactors = %v, want %v", got, tt.want)
			}
			for a, w := range tt.want {
				if math.Abs(got[a]-w) > 1e-9 {
					t.Errorf("FairShareFactors[%s] = %v, want %v", a, got[a], w)
				}
			}
		})
	}
}
