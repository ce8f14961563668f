package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
	_ "time/tzdata"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"unlimited", 0},
		{"Unlimited", 0},
		{"0Mbit/s", 0},
		{"12500000", 12_500_000},
		{"1000", 1000},
		{"1Gbit", 125_000_000},
		{"1Gbit/s", 125_000_000},
		{"10Gbit/s", 1_250_000_000},
		{"100Mbit/s", 12_500_000},
		{"100Mbps", 12_500_000},
		{"40MB/s", 40_000_000},
		{"40MB", 40_000_000},
		{"40 MB/s", 40_000_000},
		{"40MiB/s", 40 << 20},
		{"500kB/s", 500_000},
		{"500KB/s", 500_000},
		{"8KiB/s", 8 << 10},
		{"1.5Gbit/s", 187_500_000},
		{"2.5MB/s", 2_500_000},
		{"0.1MB/s", 100_000},
		{"1TB/s", 1_000_000_000_000},
		{"1Tibit/s", 1 << 37},
		{"8001bit/s", 1000}, // 1000.125 bytes/s, rounded down
	}
	for _, tc := range tests {
		got, err := ParseRate(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestParseRateErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "not a rate"},
		{"fast", "not a rate"},
		{"-5MB/s", "not a rate"},
		{"40M", "no unit"},
		{"40/s", "no unit"},
		{"40mb/s", "not a rate"}, // m is milli, b is ambiguous
		{"40Mb/s", "not a rate"},
		{"40kiB/s", "not a rate"},
		{"1e6", "not a rate"},
		{"100Mbps/s", "per second twice"},
		{"40", "below 1000"},
		{"999B/s", "below 1000"},
		{"1bit", "below 1000"}, // would round to 0, which means unlimited
		{"99999999999TB/s", "too large"},
		{"1.", "not a rate"},
	}
	for _, tc := range tests {
		_, err := ParseRate(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseRate(%q) error = %v, want one containing %q", tc.in, err, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), "40MB/s") && !strings.Contains(err.Error(), "bps") && tc.want != "too large" {
			t.Errorf("ParseRate(%q) error %q gives no example of a valid rate", tc.in, err)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"10m", 10 * time.Minute, true},
		{"1h30m", 90 * time.Minute, true},
		{"250ms", 250 * time.Millisecond, true},
		{"0", 0, true},
		{"-5s", -5 * time.Second, true}, // parsed; Validate refuses it
		{"10", 0, false},
		{"ten minutes", 0, false},
		{"10 m", 0, false},
		{"1d", 0, false},
	} {
		got, err := parseDuration(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), `"10m"`) {
			t.Errorf("parseDuration(%q) error %q gives no example", tc.in, err)
		}
	}
}

func TestParseTime(t *testing.T) {
	mx, err := time.LoadLocation("America/Mexico_City")
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2024, 6, 2, 20, 0, 0, 0, mx)
	for _, in := range []string{"2024-06-02T20:00", "2024-06-02 20:00", "2024-06-02T20:00:00", "2024-06-02 20:00:00"} {
		got, err := parseTime(in, mx)
		if err != nil || !got.Equal(want) || got.Location() != mx {
			t.Errorf("parseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"2024-06-02", "20:00", "2024-06-02T20:00Z", "2024-13-02T20:00", "02/06/2024 20:00"} {
		if _, err := parseTime(in, mx); err == nil || !strings.Contains(err.Error(), "YYYY-MM-DDTHH:MM") {
			t.Errorf("parseTime(%q) error = %v, want one showing the form", in, err)
		}
	}
}

func TestLoadZone(t *testing.T) {
	for _, name := range []string{"America/Mexico_City", "America/Tijuana", "UTC"} {
		if loc, err := loadZone(name); err != nil || loc.String() != name {
			t.Errorf("loadZone(%q) = %v, %v", name, loc, err)
		}
	}
	for _, name := range []string{"", "Local", "Mexico/Puebla", "../../etc/passwd", "america/mexico_city"} {
		if _, err := loadZone(name); err == nil || !strings.Contains(err.Error(), "America/Mexico_City") {
			t.Errorf("loadZone(%q) error = %v, want one suggesting America/Mexico_City", name, err)
		}
	}
}

func TestFmtDur(t *testing.T) {
	for d, want := range map[time.Duration]string{
		10 * time.Minute:       "10m",
		time.Hour:              "1h",
		90 * time.Minute:       "1h30m",
		30 * time.Second:       "30s",
		90 * time.Second:       "1m30s",
		200 * time.Millisecond: "200ms",
		-time.Minute:           "-1m",
		0:                      "0s",
	} {
		if got := fmtDur(d); got != want {
			t.Errorf("fmtDur(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestSuggest(t *testing.T) {
	allowed := fieldNames(reflect.TypeFor[rawTarget]())
	for in, want := range map[string]string{
		"knwon_hosts": "known_hosts",
		"Known-Hosts": "known_hosts",
		"port":        "address",
		"hostkey":     "host_key",
		"passphrase":  "passphrase_env",
		"zzz":         "",
	} {
		got := suggest(in, allowed)
		if want == "" && got != "" || want != "" && !strings.Contains(got, `"`+want+`"`) {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}
