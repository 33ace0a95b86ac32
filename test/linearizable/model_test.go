package linearizable

import (
	"math"
	"testing"

	"github.com/anishathalye/porcupine"
)

// op is an operation on the job of token "t1-token" from call to ret.
func op(client int, kind opKind, call, ret int64, out output) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: input{kind, "t1-token"}, Call: call, Return: ret, Output: out}
}

func TestModel(t *testing.T) {
	for _, tc := range []struct {
		name string
		ops  []porcupine.Operation
		want porcupine.CheckResult
	}{
		{"submit, cancel, read cancelled", []porcupine.Operation{
			op(0, opSubmit, 0, 10, output{}),
			op(1, opCancel, 20, 30, output{result: "cancelled"}),
			op(2, opRead, 40, 50, output{state: cancelled}),
		}, porcupine.Ok},
		{"a read concurrent with the cancel may see either", []porcupine.Operation{
			op(0, opSubmit, 0, 10, output{}),
			op(1, opCancel, 20, 30, output{result: "cancelled"}),
			op(2, opRead, 25, 35, output{state: pending}),
		}, porcupine.Ok},
		{"stale read after a cancel returned", []porcupine.Operation{
			op(0, opSubmit, 0, 10, output{}),
			op(1, opCancel, 20, 30, output{result: "cancelled"}),
			op(2, opRead, 40, 50, output{state: pending}),
		}, porcupine.Illegal},
		{"acknowledged job read as absent", []porcupine.Operation{
			op(0, opSubmit, 0, 10, output{}),
			op(2, opRead, 20, 30, output{state: absent}),
		}, porcupine.Illegal},
		{"two cancels both succeed", []porcupine.Operation{
			op(0, opSubmit, 0, 10, output{}),
			op(1, opCancel, 20, 30, output{result: "cancelled"}),
			op(2, opCancel, 20, 30, output{result: "cancelled"}),
		}, porcupine.Illegal},
		{"refused as finished with no cancel before it", []porcupine.Operation{
			op(0, opSubmit, 0, 10, output{}),
			op(1, opCancel, 20, 30, output{result: "finished"}),
		}, porcupine.Illegal},
		{"a cancel without answer may have applied", []porcupine.Operation{
			op(0, opSubmit, 0, 10, output{}),
			op(1, opCancel, 20, math.MaxInt64, output{result: "unknown"}),
			op(2, opRead, 40, 50, output{state: cancelled}),
			op(2, opCancel, 60, 70, output{result: "finished"}),
		}, porcupine.Ok},
		{"or not", []porcupine.Operation{
			op(0, opSubmit, 0, 10, output{}),
			op(1, opCancel, 20, math.MaxInt64, output{result: "unknown"}),
			op(2, opRead, 40, 50, output{state: pending}),
		}, porcupine.Ok},
		{"but not undone", []porcupine.Operation{
			op(0, opSubmit, 0, 10, output{}),
			op(1, opCancel, 20, math.MaxInt64, output{result: "unknown"}),
			op(2, opRead, 40, 50, output{state: cancelled}),
			op(2, opRead, 60, 70, output{state: pending}),
		}, porcupine.Illegal},
		{"done after a retry: this client may have cancelled it itself", []porcupine.Operation{
			op(0, opSubmit, 0, 10, output{}),
			op(1, opCancel, 20, 30, output{result: "done"}),
		}, porcupine.Ok},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := porcupine.CheckOperationsTimeout(model.ToModel(), tc.ops, 0); got != tc.want {
				t.Fatalf("CheckOperations(%s) = %s, want %s", tc.name, got, tc.want)
			}
		})
	}
}
