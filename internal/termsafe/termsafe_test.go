package termsafe

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestString(t *testing.T) {
	for in, want := range map[string]string{
		"sin manipulación, año 2024": "sin manipulación, año 2024",
		"\x1b[2J\x1b[31mred":         `\x1b[2J\x1b[31mred`,
		"a\nb\r\tc":                  `a\nb\r\tc`,
		"\u202egnp.exe":              `\u202egnp.exe`,
		"\xff\xfeok":                 `\xff\xfeok`,
		"\u0085next":                 `\u0085next`,
		`back\slash`:                 `back\\slash`,
		"\x7f":                       `\x7f`,
	} {
		if got := String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestStringNeverHasControlBytes(t *testing.T) {
	var all strings.Builder
	for i := 0; i < 256; i++ {
		all.WriteByte(byte(i))
	}
	all.WriteString("\u200e\u2066\u2028\ufeff")
	got := String(all.String())
	if !utf8.ValidString(got) {
		t.Fatalf("invalid UTF-8 in %q", got)
	}
	for i := 0; i < len(got); i++ {
		if got[i] < 0x20 || got[i] == 0x7f {
			t.Fatalf("control byte %#x at %d in %q", got[i], i, got)
		}
	}
	for _, r := range got {
		if r >= 0x80 && r < 0xa0 || r == '\u200e' || r == '\u2066' || r == '\u2028' || r == '\ufeff' {
			t.Fatalf("rune %U passed through in %q", r, got)
		}
	}
}

func TestClipAndLine(t *testing.T) {
	if got := Clip(strings.Repeat("é", 10), 3); got != "ééé…" {
		t.Errorf("Clip = %q", got)
	}
	if got := Clip(strings.Repeat("x", 2000), 0); len(got) != 2000 {
		t.Errorf("Clip(n=0) cut the text to %d", len(got))
	}
	if got := String(strings.Repeat("x", 2000)); utf8.RuneCountInString(got) != MaxLen+1 {
		t.Errorf("String kept %d runes", utf8.RuneCountInString(got))
	}
	if got := Line("  host key CHANGED\nfull text\x1b[0m"); got != "host key CHANGED …" {
		t.Errorf("Line = %q", got)
	}
}
