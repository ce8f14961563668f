package i18n

import (
	"sort"
	"strings"
	"testing"
	"time"
)

// TestCataloguesHaveTheSameKeys fails when a message is missing in either
// language, or when a message's formatting verbs differ between them.
func TestCataloguesHaveTheSameKeys(t *testing.T) {
	for a, ca := range catalogs {
		for b, cb := range catalogs {
			var missing []string
			for k := range ca {
				if _, ok := cb[k]; !ok {
					missing = append(missing, k)
				}
			}
			sort.Strings(missing)
			for _, k := range missing {
				t.Errorf("key %q is in the %s catalogue but missing from %s", k, a, b)
			}
		}
	}
	for k, msg := range es {
		if verbs(msg) != verbs(en[k]) {
			t.Errorf("key %q: es has verbs %q, en %q", k, verbs(msg), verbs(en[k]))
		}
		if strings.TrimSpace(msg) == "" || strings.TrimSpace(en[k]) == "" {
			t.Errorf("key %q is empty in a catalogue", k)
		}
	}
}

// verbs lists the fmt verbs of a message in order.
func verbs(s string) string {
	var v []string
	for i := 0; i < len(s)-1; i++ {
		if s[i] == '%' {
			if s[i+1] == '%' {
				i++
				continue
			}
			j := i + 1
			for j < len(s) && strings.IndexByte("+-# 0123456789.[]*", s[j]) >= 0 {
				j++
			}
			if j < len(s) {
				v = append(v, s[i:j+1])
			}
			i = j
		}
	}
	return strings.Join(v, " ")
}

func TestFormats(t *testing.T) {
	at := time.Date(2024, 6, 3, 2, 15, 7, 0, time.UTC) // 20:15 on 2 June in Mexico City
	if got := ES.Date(at); got != "2 de junio de 2024, 20:15 h (tiempo del centro)" {
		t.Errorf("ES.Date = %q", got)
	}
	if got := EN.Date(at); got != "June 2, 2024, 20:15 (central Mexico time)" {
		t.Errorf("EN.Date = %q", got)
	}
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 22000: "22,000", -1234567: "-1,234,567"} {
		if got := ES.Int(n); got != want {
			t.Errorf("Int(%d) = %q, want %q", n, got, want)
		}
	}
	if got := ES.Float(1234.5, 1); got != "1,234.5" {
		t.Errorf("Float = %q", got)
	}
	if got := ES.Float(-0.04, 1); got != "0.0" {
		t.Errorf("Float(-0.04) = %q", got)
	}
	if got := ES.Duration(65 * time.Minute); got != "1 h 05 min" {
		t.Errorf("Duration = %q", got)
	}
	if got := ES.T("no.such.key"); got != "[no.such.key]" {
		t.Errorf("missing key = %q", got)
	}
}

func TestParseAndEnv(t *testing.T) {
	for in, want := range map[string]Lang{"es": ES, "es_MX.UTF-8": ES, "en-US": EN, "EN": EN} {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := Parse("fr"); err == nil || !strings.Contains(err.Error(), "es (español) or en") {
		t.Errorf("Parse(fr) err = %v", err)
	}
	t.Setenv("LC_ALL", "")
	t.Setenv("LC_MESSAGES", "")
	t.Setenv("LANG", "en_US.UTF-8")
	if FromEnv() != EN {
		t.Error("LANG=en_US.UTF-8 did not give English")
	}
	t.Setenv("LANG", "C")
	if FromEnv() != ES {
		t.Error("LANG=C did not give the default")
	}
}
