package api

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSlurmTime(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"5", 5 * 60},
		{"90", 90 * 60},
		{"5:30", 5*60 + 30},
		{"2:03:04", 2*3600 + 3*60 + 4},
		{"100:00:00", 100 * 3600},
		{"1-0", 86400},
		{"1-2", 86400 + 2*3600},
		{"1-2:30", 86400 + 2*3600 + 30*60},
		{"1-02:03:04", 86400 + 2*3600 + 3*60 + 4},
		{"UNLIMITED", Unlimited},
		{"unlimited", Unlimited},
		{"INFINITE", Unlimited},
		{"infinite", Unlimited},
		{"0", Unlimited},
		{"0:00", Unlimited},
		{" 10 ", 600},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSlurmTime(tt.in)
			if err != nil {
				t.Fatalf("ParseSlurmTime(%q) error: %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseSlurmTime(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseSlurmTimeErrors(t *testing.T) {
	tests := []struct {
		in      string
		wantMsg string
	}{
		{"", "empty"},
		{"abc", `minutes "abc" is not a number`},
		{"-5", "days missing"},
		{"1:2:3:4", "too many"},
		{"1:60", "seconds 60 out of range 0-59"},
		{"1:60:00", "minutes 60 out of range"},
		{"1-24", "hours 24 out of range 0-23"},
		{"1-1:2:3:4", "too many"},
		{"x-1", `days "x" is not a number`},
		{"1-", "hours missing"},
		{"5:", "seconds missing"},
		{"1.5", "is not a number"},
		{"99999999999999999999", "too large"},
		{"40000-0", "longer than 100 years"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSlurmTime(tt.in)
			if err == nil {
				t.Fatalf("ParseSlurmTime(%q) = %d, want error containing %q", tt.in, got, tt.wantMsg)
			}
			var te *TimeFormatError
			if !errors.As(err, &te) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("ParseSlurmTime(%q) error = %v, want a TimeFormatError containing %q", tt.in, err, tt.wantMsg)
			}
		})
	}
}

func TestFormatSlurmDuration(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "0:00"},
		{5, "0:05"},
		{65, "1:05"},
		{3599, "59:59"},
		{3600, "1:00:00"},
		{2*3600 + 3*60 + 4, "2:03:04"},
		{86399, "23:59:59"},
		{86400, "1-00:00:00"},
		{86400 + 2*3600 + 3*60 + 4, "1-02:03:04"},
		{12 * 86400, "12-00:00:00"},
		{Unlimited, "UNLIMITED"},
	}
	for _, tt := range tests {
		if got := FormatSlurmDuration(tt.in); got != tt.want {
			t.Errorf("FormatSlurmDuration(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestSlurmTimeRoundTrip checks that what FormatSlurmDuration prints,
// ParseSlurmTime reads back, for the forms that carry hours.
func TestSlurmTimeRoundTrip(t *testing.T) {
	for _, s := range []int64{3600, 3661, 86399, 86400, 90061, 40 * 86400} {
		f := FormatSlurmDuration(s)
		got, err := ParseSlurmTime(f)
		if err != nil || got != s {
			t.Errorf("ParseSlurmTime(FormatSlurmDuration(%d) = %q) = %d, %v; want %d", s, f, got, err, s)
		}
	}
}
