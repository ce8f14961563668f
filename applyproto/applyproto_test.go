package applyproto

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReadLineBounds(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		max      int
		want     string
		err      error
	}{
		{"one line", "abc\nrest", 10, "abc", nil},
		{"exactly max", "abcde\n", 5, "abcde", nil},
		{"one over", "abcdef\n", 5, "", ErrLineTooLong},
		{"no newline before the bound", strings.Repeat("x", 100), 10, "", ErrLineTooLong},
		{"cut short", "abc", 10, "", io.ErrUnexpectedEOF},
		{"nothing", "", 10, "", io.EOF},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadLine(bufio.NewReaderSize(strings.NewReader(tt.in), 16), tt.max)
			if !errors.Is(err, tt.err) || (tt.err == nil && string(got) != tt.want) {
				t.Fatalf("ReadLine = %q, %v; want %q, %v", got, err, tt.want, tt.err)
			}
		})
	}
}

// A line far longer than the bound is refused after reading about the
// bound, not the whole line.
func TestReadLineStopsAtTheBound(t *testing.T) {
	r := &countingZeros{}
	_, err := ReadLine(bufio.NewReaderSize(r, 4096), 64<<10)
	if !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("err = %v", err)
	}
	if r.n > 64<<10+8192 {
		t.Fatalf("read %d bytes for a 64 KiB bound", r.n)
	}
}

type countingZeros struct{ n int }

func (c *countingZeros) Read(p []byte) (int, error) {
	clear(p)
	c.n += len(p)
	return len(p), nil
}

func TestDecodeLineRefusesAndEscapes(t *testing.T) {
	var h Hello
	err := DecodeLine([]byte("{\"format\":\"x\",\"evil\":\"\x1b[31m\"}"), &h)
	if err == nil || strings.ContainsRune(err.Error(), 0x1b) {
		t.Fatalf("unknown field: err = %q", err)
	}
	if err := DecodeLine([]byte(`{"format":"x"} {}`), &h); err == nil {
		t.Fatal("data after the object accepted")
	}
	var buf bytes.Buffer
	in := Request{Format: Format, PackageSize: 7, ToSeq: 3, ToManifest: strings.Repeat("a", 64)}
	if err := WriteLine(&buf, in); err != nil {
		t.Fatal(err)
	}
	line, err := ReadLine(bufio.NewReader(&buf), MaxRequestLine)
	if err != nil {
		t.Fatal(err)
	}
	var out Request
	if err := DecodeLine(line, &out); err != nil || out != in {
		t.Fatalf("round trip: %+v, %v", out, err)
	}
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"format":"prepcast-apply/2","public_key":"AAAA","package_size":10,"to_seq":2}` + "\n"))
	f.Add([]byte("\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		line, err := ReadLine(bufio.NewReaderSize(bytes.NewReader(data), 64), 256)
		if err != nil {
			return
		}
		if len(line) > 256 {
			t.Fatalf("line of %d bytes over a bound of 256", len(line))
		}
		var req Request
		if err := DecodeLine(line, &req); err != nil && strings.ContainsAny(err.Error(), "\x00\x1b\n\r") {
			t.Fatalf("unescaped error %q", err)
		}
	})
}
