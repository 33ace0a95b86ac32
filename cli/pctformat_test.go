package cli

import (
	"fmt"
	"testing"
)

// TestAppendPiecesPadsAsFmt checks that appendPieces pads and cuts as the
// fmt verbs it replaced: %-*s and %*s pad to a width in characters, and a
// longer value is cut to width bytes.
func TestAppendPiecesPadsAsFmt(t *testing.T) {
	type field struct{}
	f := &field{}
	for _, v := range []string{"", "a", "gpu", "exactly8", "longer than eight", "héllo", "日本語"} {
		for _, right := range []bool{false, true} {
			pieces := []formatPiece[field]{{lit: "["}, {field: f, width: 8, right: right}, {lit: "]"}}
			got := string(appendPieces(nil, pieces, func(*field) string { return v }))
			verb := "[%-*s]"
			if right {
				verb = "[%*s]"
			}
			want := fmt.Sprintf(verb, 8, v)
			if len(v) > 8 {
				want = "[" + v[:8] + "]"
			}
			if got != want {
				t.Errorf("appendPieces(%q, width 8, right %v) = %q, want %q", v, right, got, want)
			}
		}
	}
}
