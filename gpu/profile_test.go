package gpu

import (
	"regexp"
	"testing"
)

var uuidRE = regexp.MustCompile(`^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func TestSimulatedUUID(t *testing.T) {
	seen := map[string]string{}
	for _, host := range []string{"a", "b", "node-1", "node-10"} {
		for i := range 8 {
			u := SimulatedUUID(host, i)
			if !uuidRE.MatchString(u) {
				t.Errorf("SimulatedUUID(%q, %d) = %q, want NVIDIA's format", host, i, u)
			}
			if prev, dup := seen[u]; dup {
				t.Errorf("SimulatedUUID(%q, %d) = %q, same as %s", host, i, u, prev)
			}
			seen[u] = host
			if again := SimulatedUUID(host, i); again != u {
				t.Errorf("SimulatedUUID(%q, %d) = %q then %q, want stable", host, i, u, again)
			}
		}
	}
}
