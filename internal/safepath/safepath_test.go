package safepath

import (
	"errors"
	"path"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		rel string
		ok  bool
	}{
		{"json/main.json", true},
		{"actas/GUB/Gubernatura_024_TEHUACAN_1972_B01.jpg", true},
		{"datos/año ñandú.csv", true},
		{".well-known/x", true},
		{"a..b", true},
		{"", false},
		{"/etc/passwd", false},
		{"../x", false},
		{"a/../../x", false},
		{"a/./b", false},
		{".", false},
		{"..", false},
		{"a//b", false},
		{"a/", false},
		{"a\\..\\b", false},
		{"a\x00b", false},
		{"a\nb", false},
		{"a\x7fb", false},
		{"a\u0085b", false},
		{"\xff\xfe.json", false},
		{".prepcast", false},
		{".prepcast/ack.json", false},
		{".well-known/prepcast", false},
		{".well-known/prepcast/index.json", false},
		{".well-known/security.txt", true},
		{".well-known/prepcastx", true},
		{strings.Repeat("a", MaxLen+1), false},
	}
	for _, tt := range tests {
		err := Check(tt.rel)
		if (err == nil) != tt.ok {
			t.Errorf("Check(%q) = %v, want ok=%v", tt.rel, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("Check(%q) error does not wrap ErrInvalid", tt.rel)
		}
	}
}

func TestCheckInternal(t *testing.T) {
	for _, ok := range []string{".prepcast", ".prepcast/ack.json", ".prepcast/staging/abc", "json/main.json", ".well-known/prepcast/cuts/000001-ab.json"} {
		if err := CheckInternal(ok); err != nil {
			t.Errorf("CheckInternal(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{".prepcast/../../etc", ".prepcast//x", "/.prepcast/x", ".prepcast/\x01", ".well-known/prepcast/../../x", ".well-known/prepcast//x"} {
		if err := CheckInternal(bad); err == nil {
			t.Errorf("CheckInternal(%q) accepted", bad)
		}
	}
}

func FuzzCheck(f *testing.F) {
	for _, s := range []string{"json/main.json", "../a", "a/../b", "/x", ".prepcast/x", "a\\b", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rel string) {
		for _, check := range []func(string) error{Check, CheckInternal} {
			if check(rel) != nil {
				continue
			}
			// Joined to any root, an accepted path stays below it.
			joined := path.Join("/root/www", rel)
			if !strings.HasPrefix(joined, "/root/www/") {
				t.Fatalf("accepted %q escapes the root: %q", rel, joined)
			}
			if path.Clean(rel) != rel || strings.HasPrefix(rel, "/") {
				t.Fatalf("accepted unclean %q", rel)
			}
		}
	})
}

// Names a Windows difusor cannot store are refused, since any difusor may
// run Windows; ordinary PREP names pass.
func TestCheckRefusesNamesWindowsCannotStore(t *testing.T) {
	for _, p := range []string{"json/main.json:stream", "img/a*b.jpg", "a?.csv", `x"y`, "a<b", "a>b", "a|b",
		"dir./f", "dir /f", "f.", "f ", "CON", "con.json", "json/nul.txt", "Aux", "com1.csv", "LPT9.jpg"} {
		if err := Check(p); err == nil {
			t.Errorf("Check(%q) passed", p)
		} else if !strings.Contains(err.Error(), "Windows") {
			t.Errorf("Check(%q) = %v, want the reason to name Windows", p, err)
		}
	}
	for _, p := range []string{"json/main.json", "json/20240603_0300/gub.json", "img/PUE-GUB-0001-B.jpg",
		"console.json", "com10.csv", "auxiliar/x", ".hidden", "a.b.c"} {
		if err := Check(p); err != nil {
			t.Errorf("Check(%q) = %v", p, err)
		}
	}
}
