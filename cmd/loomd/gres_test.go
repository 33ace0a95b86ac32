package main

import "testing"

// TestAgentGresInConfig: [agent] gres declares the node's generic
// resources as --gres does, and loom config check refuses a bad one.
func TestAgentGresInConfig(t *testing.T) {
	good := writeConfig(t, "[server]\ntls = false\n[agent]\ntls = false\ngres = [\"nvme:3600\", \"license_x:4\"]\ngpu_type = \"a100\"\n")
	if rc := configCheckMain(t.Context(), []string{good}, testStdio(t)); rc != 0 {
		t.Fatalf("loom config check of gres = [nvme:3600, license_x:4] exited %d", rc)
	}
	for _, bad := range []string{`gres = "nvme:lots"`, `gres = "gpu:8"`, `gres = "nvme:1,nvme:2"`} {
		path := writeConfig(t, "[server]\ntls = false\n[agent]\ntls = false\n"+bad+"\n")
		if rc := configCheckMain(t.Context(), []string{path}, testStdio(t)); rc == 0 {
			t.Errorf("loom config check passed [agent] %s", bad)
		}
	}
}
