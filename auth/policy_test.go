package auth

import (
	"strings"
	"testing"
)

var testDirectory = MemoryDirectory{
	Users: []User{
		{Name: "root", UID: 0, GID: 0, Groups: []uint32{0}},
		{Name: "alice", UID: 1000, GID: 1000, Groups: []uint32{1000}},
		{Name: "bob", UID: 1001, GID: 1001, Groups: []uint32{1001, 50}},
		{Name: "slurm", UID: 64030, GID: 64030, Groups: []uint32{64030}},
		{Name: "carol", UID: 1002, GID: 1002, Groups: []uint32{1002}},
	},
	Groups: map[string]uint32{"root": 0, "hpcadmin": 50, "ops": 60},
}

func TestPolicy(t *testing.T) {
	p := &Policy{OperatorUsers: []string{"slurm", "root"}, OperatorGroups: []string{"hpcadmin", "ops", "gone"}, Directory: testDirectory}
	const aliceJob = 1000
	for _, tc := range []struct {
		name     string
		caller   Identity
		operator bool
		onAlice  bool // CanActOnJob(caller, alice's job)
	}{
		{"owner", Identity{UID: 1000, GID: 1000, Method: MethodMunge}, false, true},
		{"other user", Identity{UID: 1002, GID: 1002, Method: MethodMunge}, false, false},
		{"operator by name", Identity{UID: 64030, GID: 64030, Method: MethodMunge}, true, true},
		{"operator by supplementary group", Identity{UID: 1001, GID: 1001, Method: MethodMunge}, true, true},
		{"operator by credential gid", Identity{UID: 1002, GID: 60, Method: MethodMunge}, true, true},
		{"unresolved uid by credential gid", Identity{UID: 5000, GID: 50, Method: MethodMunge}, true, true},
		{"unresolved uid", Identity{UID: 5000, GID: 5000, Method: MethodMunge}, false, false},
		{"root local", Identity{UID: 0, GID: 0, Method: MethodLocal, Local: true}, true, true},
		{"root forwarded local", Identity{UID: 0, GID: 0, Method: MethodForwarded, Local: true}, true, true},
		{"root by munge, despite its name listed", Identity{UID: 0, GID: 0, Method: MethodMunge}, false, false},
		{"root forwarded from afar", Identity{UID: 0, GID: 0, Method: MethodForwarded}, false, false},
		{"no identity", Identity{}, false, false},
		{"no identity named alice", Identity{UID: 1000, GID: 1000}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.IsOperator(tc.caller); got != tc.operator {
				t.Errorf("IsOperator(%v) = %v, want %v", tc.caller, got, tc.operator)
			}
			if got := p.CanActOnJob(tc.caller, aliceJob); got != tc.onAlice {
				t.Errorf("CanActOnJob(%v, %d) = %v, want %v", tc.caller, aliceJob, got, tc.onAlice)
			}
		})
	}
}

func TestPolicyRootOwnJob(t *testing.T) {
	p := &Policy{Directory: testDirectory}
	root := Identity{UID: 0, GID: 0, Method: MethodMunge}
	if !p.CanActOnJob(root, 0) {
		t.Errorf("CanActOnJob(%v, 0) = false, want true: root owns the job", root)
	}
}

func TestPolicyValidate(t *testing.T) {
	p := &Policy{OperatorGroups: []string{"hpcadmin", "admns"}, Directory: testDirectory}
	err := p.Validate()
	if err == nil || !strings.Contains(err.Error(), `operators.groups[1] "admns"`) {
		t.Errorf("Validate() = %v, want an error naming operators.groups[1] \"admns\"", err)
	}
	if err := (&Policy{OperatorGroups: []string{"ops"}, Directory: testDirectory}).Validate(); err != nil {
		t.Errorf("Validate() with known groups = %v", err)
	}
}
