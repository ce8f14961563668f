package main

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

func TestReadAheadDeliversEveryByteInOrder(t *testing.T) {
	data := make([]byte, 5<<20+123)
	for i := range data {
		data[i] = byte(rand.IntN(256))
	}
	for _, tt := range []struct {
		name         string
		chunk, depth int
		src          io.Reader
	}{
		{"big chunks", 1 << 20, 8, bytes.NewReader(data)},
		{"tiny chunks", 7, 2, bytes.NewReader(data)},
		{"one byte at a time from the source", 4096, 3, iotest.OneByteReader(bytes.NewReader(data[:100000]))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			want := data
			if tt.name == "one byte at a time from the source" {
				want = data[:100000]
			}
			got, err := io.ReadAll(iotest.HalfReader(newReadAhead(tt.src, tt.chunk, tt.depth)))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes, not the %d written", len(got), len(want))
			}
		})
	}
}

func TestReadAheadPassesTheSourceError(t *testing.T) {
	boom := errors.New("connection lost")
	r := newReadAhead(io.MultiReader(bytes.NewReader([]byte("abc")), iotest.ErrReader(boom)), 2, 2)
	got, err := io.ReadAll(r)
	if string(got) != "abc" || !errors.Is(err, boom) {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, boom) {
		t.Fatalf("second read after the error: %v", err)
	}
}
