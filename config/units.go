package config

import (
	"fmt"
	"math/big"
	"regexp"
	"strings"
	"time"
)

// MinRate is the smallest non-zero rate [ParseRate] accepts, in bytes per
// second. Anything slower would stall a push and is almost always a
// forgotten unit ("40" meant as 40MB/s).
const MinRate = 1000

// rateExamples is appended to every rate error.
const rateExamples = `e.g. "1Gbit/s", "100Mbit/s", "40MB/s", "40MiB/s", "500kB/s", "12500000" (bytes/s), or "unlimited"`

var rateRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?) ?(k|K|M|G|T|Ki|Mi|Gi|Ti)?(B|bit|bps)?(/s)?$`)

var ratePrefix = map[string]int64{
	"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
	"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
}

// ParseRate parses a transfer rate and returns it in bytes per second; 0
// means unlimited. It accepts a plain number of bytes per second
// ("12500000"), "0", "unlimited", or a number (decimals allowed) followed by
// an optional SI (k, M, G, T = 1000^n) or binary (Ki, Mi, Gi, Ti = 1024^n)
// prefix, a unit "B" (bytes) or "bit" (bits, divided by 8), and an optional
// "/s": "1Gbit", "1Gbit/s", "100Mbit/s", "40MB/s", "40MiB/s", "500kB/s".
// "bps" is accepted as "bit/s". Fractional bytes are rounded down. A
// non-zero rate below [MinRate] is refused.
func ParseRate(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "unlimited") {
		return 0, nil
	}
	m := rateRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a rate; %s", s, rateExamples)
	}
	num, prefix, unit, perSec := m[1], m[2], m[3], m[4]
	if unit == "" && (prefix != "" || perSec != "") {
		return 0, fmt.Errorf("%q has no unit; write B for bytes or bit for bits, %s", s, rateExamples)
	}
	if unit == "bps" && perSec != "" {
		return 0, fmt.Errorf("%q says per second twice; write %sbps or %sbit/s", s, num+prefix, num+prefix)
	}
	v, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("%q is not a rate; %s", s, rateExamples)
	}
	v.Mul(v, new(big.Rat).SetInt64(ratePrefix[prefix]))
	if unit == "bit" || unit == "bps" {
		v.Quo(v, big.NewRat(8, 1))
	}
	if v.Sign() == 0 {
		return 0, nil
	}
	if v.Cmp(big.NewRat(MinRate, 1)) < 0 {
		return 0, fmt.Errorf("%q is below %d bytes per second, which would stall every push; check the unit, %s", s, MinRate, rateExamples)
	}
	n := new(big.Int).Quo(v.Num(), v.Denom())
	if !n.IsInt64() {
		return 0, fmt.Errorf("%q is too large; write 0 or unlimited for no limit", s)
	}
	return n.Int64(), nil
}

// sizeExamples is appended to every size error.
const sizeExamples = `e.g. "20GB", "500MB", "20GiB" or "20000000000" (bytes)`

var sizeRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?) ?(k|K|M|G|T|Ki|Mi|Gi|Ti)?(B)?$`)

// ParseSize parses an amount of data and returns it in bytes: a plain
// number of bytes, or a number followed by an SI (k, M, G, T = 1000^n) or
// binary (Ki, Mi, Gi, Ti = 1024^n) prefix and "B": "20GB", "20GiB".
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	m := sizeRE.FindStringSubmatch(s)
	if m == nil || (m[2] != "" && m[3] == "") {
		return 0, fmt.Errorf("%q is not a size; %s", s, sizeExamples)
	}
	v, ok := new(big.Rat).SetString(m[1])
	if !ok {
		return 0, fmt.Errorf("%q is not a size; %s", s, sizeExamples)
	}
	v.Mul(v, new(big.Rat).SetInt64(ratePrefix[m[2]]))
	n := new(big.Int).Quo(v.Num(), v.Denom())
	if !n.IsInt64() {
		return 0, fmt.Errorf("%q is too large; %s", s, sizeExamples)
	}
	return n.Int64(), nil
}

// durationExamples is appended to every duration error.
const durationExamples = `e.g. "30s", "10m" or "1h30m"`

// parseDuration parses a Go duration, with an error that says how to write one.
func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration; write a number with a unit (ms, s, m, h), %s", s, durationExamples)
	}
	return d, nil
}

// timeLayouts are the accepted forms of schedule times, in the config's zone.
var timeLayouts = []string{
	"2006-01-02T15:04",
	"2006-01-02 15:04",
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05",
}

// TimeLayout is the form in which schedule times are written and shown.
const TimeLayout = "2006-01-02T15:04"

// parseTime parses a schedule time as local time in loc.
func parseTime(s string, loc *time.Location) (time.Time, error) {
	for _, layout := range timeLayouts {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time; write local time in zone %s as \"YYYY-MM-DDTHH:MM\", e.g. \"2024-06-02T20:00\"", s, loc)
}
