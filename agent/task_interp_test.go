package agent

import (
	"slices"
	"testing"
)

func TestInterpreter(t *testing.T) {
	for _, tc := range []struct {
		script string
		want   []string
	}{
		{"#!/bin/sh\ntrue\n", []string{"/bin/sh"}},
		{"#!/usr/bin/env python3\nprint(1)\n", []string{"/usr/bin/env", "python3"}},
		{"#! /bin/bash -eu  \nset -x\n", []string{"/bin/bash", "-eu"}},
		{"#!/usr/bin/env\tpython3 -u\n", []string{"/usr/bin/env", "python3 -u"}},
		{"#!\n", []string{"/bin/sh"}},
		{"echo no shebang\n", []string{"/bin/sh"}},
		{"#!/bin/sh", []string{"/bin/sh"}},
	} {
		if got := interpreter(tc.script); !slices.Equal(got, tc.want) {
			t.Errorf("interpreter(%q) = %q, want %q", tc.script, got, tc.want)
		}
	}
}
