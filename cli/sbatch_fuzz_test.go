package cli

import (
	"regexp"
	"strings"
	"testing"

	"github.com/loomhpc/loom/api"
)

// quoteDirectiveWord quotes w so that splitDirectiveWords reads it back as
// one word.
func quoteDirectiveWord(w string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(w) + `"`
}

var lineErr = regexp.MustCompile(`^line [0-9]+: `)

// FuzzSbatchScript reads a batch script as sbatch does. Properties: the
// directives come in line order from "#SBATCH" lines of the script; their
// words, quoted and split again, are the same words; a script sbatch
// accepts gives a spec that validates and carries the script unchanged;
// a directive sbatch refuses is named by its line.
func FuzzSbatchScript(f *testing.F) {
	for _, s := range []string{
		"#!/bin/sh\n#SBATCH -N 2 -n 4 # nodes\n#SBATCH\t--job-name='a b'\nsrun hostname\n",
		"#!/bin/bash\n#SBATCH --gres=gpu:8 --time=1-00:00:00 --array=0-7%2\n#SBATCH -J \"q\\\"x\" --output=x\\ y\n",
		"#!/bin/sh\n#SBATCH --nodelist=node[1-4] --exclusive\n#SBATCH --mem=4G --begin=now+1hour\n",
		"#!/bin/sh\n#SBATCH --export=ALL,A=1 --dependency=afterok:1\necho\n#SBATCH -N 99\n",
		"#!/bin/sh\n#SBATCH --job-name='unterminated\n",
		"#!/bin/sh\n#SBATCH -c 2147483648 -n 2\n",
		"#!/bin/sh\n#SBATCH --bogus\n#SBATCH -N\n",
		"#!/bin/sh\n#SBATCH--time=24:00:00\n#SBATCHX\n",
		"#!/bin/sh\n#SBATCH --mem=80GB --array=[0-3,7] --gres=gpu:a100 -C 'ib&[r1|r2]'\n",
		"#!/bin/sh\n#SBATCH --mem-per-gpu=8G --cpus-per-gpu=4 --gpus=2 --time-min=5 --mail-type=END\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, script string) {
		dirs, scanErr := scanDirectives(script)
		if scanErr == nil {
			lines := strings.Split(script, "\n")
			prev := 0
			for _, d := range dirs {
				if d.line <= prev || d.line > len(lines) || len(d.words) == 0 {
					t.Fatalf("directive at line %d (after %d, of %d lines) with words %q", d.line, prev, len(lines), d.words)
				}
				prev = d.line
				if !strings.HasPrefix(lines[d.line-1], directivePrefix) {
					t.Fatalf("directive from line %d, %q, which is no #SBATCH line", d.line, lines[d.line-1])
				}
				quoted := make([]string, len(d.words))
				for i, w := range d.words {
					quoted[i] = quoteDirectiveWord(w)
				}
				again, err := splitDirectiveWords(" " + strings.Join(quoted, " "))
				if err != nil || strings.Join(again, "\x00") != strings.Join(d.words, "\x00") || len(again) != len(d.words) {
					t.Fatalf("words %q quoted as %q split to %q, %v", d.words, quoted, again, err)
				}
			}
		} else if !lineErr.MatchString(scanErr.Error()) {
			t.Fatalf("scanDirectives error %q does not name the line", scanErr)
		}

		te := newTestEnv("sbatch", "unused")
		te.stdin = strings.NewReader(script)
		o := &sbatchOpts{now: te.now}
		spec, err := buildSpec(te.env, o, sbatchOptions(o), nil, nil)
		if err != nil {
			if checkScript(script) == nil && len(script) <= api.MaxScriptBytes && scanErr != nil && !lineErr.MatchString(err.Error()) {
				t.Fatalf("sbatch refused a script whose directives do not scan with %q, which does not name the line", err)
			}
			return
		}
		if scanErr != nil {
			t.Fatalf("sbatch accepted a script whose directives do not scan (%v)", scanErr)
		}
		if spec.Script != script {
			t.Fatalf("spec.Script = %q, want the script %q", spec.Script, script)
		}
		if err := api.ValidateSpec(spec); err != nil {
			t.Fatalf("sbatch accepted a spec that does not validate: %v", err)
		}
	})
}
