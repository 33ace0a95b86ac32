package cli

import (
	"testing"
	"time"
)

func TestParseBegin(t *testing.T) {
	now := time.Date(2026, 11, 25, 14, 30, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
	}{
		{"now+90", now.Add(90 * time.Second)},
		{"now+2hours", now.Add(2 * time.Hour)},
		{"now+1day", now.Add(24 * time.Hour)},
		{"16:00", time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)},
		{"10:15", time.Date(2026, 11, 26, 10, 15, 0, 0, time.UTC)},
		{"2026-12-01T08:00", time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)},
		{"2026-12-01", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)},
		{"midnight", time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)},
		{"teatime", time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		got, err := parseBegin(tt.in, now)
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("parseBegin(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"later", "now+5fortnights", "25:99"} {
		if _, err := parseBegin(bad, now); err == nil {
			t.Errorf("parseBegin(%q) = nil error, want one", bad)
		}
	}
}
