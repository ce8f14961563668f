// Package i18n holds the words prepcast shows the public and the difusores
// (public pages, onboarding reports, the verifier's output), in Spanish by
// default and in English, and formats dates and numbers the way readers in
// Mexico expect them.
//
// Every text lives in one catalogue per language (es.go, en.go) under the
// same keys; a test fails when a key is missing from either. The operator's
// CLI stays in plain English and does not use this package.
package i18n

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // the reader's zone on any machine
)

// Lang is a language the catalogues hold.
type Lang string

// The languages. Spanish is the default: the call for difusores, the
// institute's staff and the public read Spanish.
const (
	ES Lang = "es"
	EN Lang = "en"
)

// Default is the language of every page and report unless asked otherwise.
const Default = ES

// Zone is the zone dates are shown in: "tiempo del centro" of Mexico.
var Zone = mustZone("America/Mexico_City")

func mustZone(name string) *time.Location {
	z, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return z
}

// catalogs maps each language to its messages.
var catalogs = map[Lang]map[string]string{ES: es, EN: en}

// Parse reads a language as a flag or an environment variable gives it:
// "es", "en", "es_MX.UTF-8", "en-US". It names the choices when it does not
// know the language.
func Parse(s string) (Lang, error) {
	base := strings.ToLower(s)
	if i := strings.IndexAny(base, "_-.@"); i >= 0 {
		base = base[:i]
	}
	switch Lang(base) {
	case ES, EN:
		return Lang(base), nil
	}
	return "", fmt.Errorf("language %q is not available; use es (español) or en (English)", s)
}

// FromEnv returns the reader's language from LC_ALL, LC_MESSAGES or LANG
// (the first one set), or Default when none names a known language.
func FromEnv() Lang {
	for _, v := range []string{"LC_ALL", "LC_MESSAGES", "LANG"} {
		if s := os.Getenv(v); s != "" && s != "C" && s != "POSIX" {
			if l, err := Parse(s); err == nil {
				return l
			}
			return Default
		}
	}
	return Default
}

// T returns the message key in language l, formatted with args like
// fmt.Sprintf. A key missing from l falls back to Default, then to the key
// itself in brackets, so a page never shows nothing (the catalogue test
// makes sure that does not ship).
func (l Lang) T(key string, args ...any) string {
	msg, ok := catalogs[l][key]
	if !ok {
		msg, ok = catalogs[Default][key]
	}
	if !ok {
		return "[" + key + "]"
	}
	if len(args) == 0 {
		return msg
	}
	return fmt.Sprintf(msg, args...)
}

// Tag is the value of an HTML lang attribute for l.
func (l Lang) Tag() string {
	if l == ES {
		return "es-MX"
	}
	return "en"
}

var monthsES = [...]string{"enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre", "noviembre", "diciembre"}

// Date formats t in Mexico's central zone: "2 de junio de 2024, 20:15 h
// (tiempo del centro)" or "June 2, 2024, 20:15 (central Mexico time)".
func (l Lang) Date(t time.Time) string {
	t = t.In(Zone)
	if l == ES {
		return fmt.Sprintf("%d de %s de %d, %s h (tiempo del centro)", t.Day(), monthsES[t.Month()-1], t.Year(), t.Format("15:04"))
	}
	return t.Format("January 2, 2006, 15:04") + " (central Mexico time)"
}

// Time formats the clock time of t in Mexico's central zone: "20:15:07".
func (l Lang) Time(t time.Time) string { return t.In(Zone).Format("15:04:05") }

// Int formats n with thousands separated by commas, as in Mexico (and in
// English): 22,000.
func (l Lang) Int(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Float formats f with prec decimals, a decimal point and thousands
// commas, as in Mexico: 1,234.5.
func (l Lang) Float(f float64, prec int) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "—"
	}
	s := strconv.FormatFloat(math.Abs(f), 'f', prec, 64)
	whole, frac, _ := strings.Cut(s, ".")
	n, _ := strconv.ParseInt(whole, 10, 64)
	out := l.Int(n)
	if f < 0 && (n != 0 || strings.Trim(frac, "0") != "") {
		out = "-" + out
	}
	if frac != "" {
		out += "." + frac
	}
	return out
}

// Duration formats d for a reader: "3 min 20 s", "1 h 05 min", "12 s".
func (l Lang) Duration(d time.Duration) string {
	d = d.Round(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	switch {
	case h > 0:
		return fmt.Sprintf("%d h %02d min", h, m)
	case m > 0:
		return fmt.Sprintf("%d min %02d s", m, s)
	}
	return fmt.Sprintf("%d s", s)
}
