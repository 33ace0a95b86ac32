package main

import (
	"regexp"
	"testing"
)

func TestDefaultCgroupRoot(t *testing.T) {
	a := defaultCgroupRoot("gpu 01", "/var/lib/loom/agent")
	if a != defaultCgroupRoot("gpu 01", "/var/lib/loom/agent") {
		t.Fatalf("defaultCgroupRoot is not stable: %q", a)
	}
	if !regexp.MustCompile(`^loom_gpu_01_[0-9a-f]{8}$`).MatchString(a) {
		t.Errorf(`defaultCgroupRoot("gpu 01", ...) = %q, want loom_gpu_01_ and 8 hex digits`, a)
	}
	if b := defaultCgroupRoot("gpu 01", "/tmp/other"); b == a {
		t.Errorf("two data dirs share the root %q", a)
	}
}
