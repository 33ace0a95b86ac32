// Package linearizable checks that what clients see of a Loom cluster
// (submit, cancel, consistent reads) is linearizable, also across leader
// kills: this file is the sequential model of a job that porcupine checks
// histories against; linearizable_test.go (build tag e2e) records the
// histories on real processes.
package linearizable

import (
	"github.com/anishathalye/porcupine"
)

// What a job can be, in the model and in reads.
type jobState int

const (
	absent jobState = iota
	pending
	cancelled
)

func (s jobState) String() string { return [...]string{"absent", "pending", "cancelled"}[s] }

type opKind int

const (
	opSubmit opKind = iota
	opCancel
	opRead
)

// input is one operation on the job of token.
type input struct {
	kind  opKind
	token string
}

// output is what the client saw. For a submit it was acknowledged (else it
// is left out of the history: nothing can be read of a job whose id no
// client knows; the accounting at the end covers it).
type output struct {
	// cancel: "cancelled", "finished" (refused: already ended),
	// "done" (finished after an attempt without answer, which may have
	// been the one that cancelled), or "unknown" (no answer at all).
	result string
	state  jobState // read
}

// model is a job's life as one client alone would see it.
var model = porcupine.NondeterministicModel{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var order []string
		for _, op := range h {
			tok := op.Input.(input).token
			if _, ok := by[tok]; !ok {
				order = append(order, tok)
			}
			by[tok] = append(by[tok], op)
		}
		var out [][]porcupine.Operation
		for _, tok := range order {
			out = append(out, by[tok])
		}
		return out
	},
	Init: func() []any { return []any{absent} },
	Step: func(st, in, out any) []any {
		s, i, o := st.(jobState), in.(input), out.(output)
		switch i.kind {
		case opSubmit:
			if s == absent {
				return []any{pending}
			}
		case opRead:
			if s == o.state {
				return []any{s}
			}
		case opCancel:
			switch {
			case o.result == "cancelled" && s == pending:
				return []any{cancelled}
			case o.result == "finished" && s == cancelled:
				return []any{cancelled}
			case o.result == "done" && s != absent:
				return []any{cancelled}
			case o.result == "unknown" && s == pending:
				return []any{pending, cancelled}
			case o.result == "unknown" && s == cancelled:
				return []any{cancelled}
			}
		}
		return nil
	},
	DescribeOperation: func(in, out any) string {
		i, o := in.(input), out.(output)
		switch i.kind {
		case opSubmit:
			return "submit " + i.token[:6]
		case opCancel:
			return "cancel " + i.token[:6] + " -> " + o.result
		}
		return "read " + i.token[:6] + " -> " + o.state.String()
	},
}
