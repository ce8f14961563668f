package resultsgen

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestOptionsValidation(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"interval below a minute", Options{Interval: 30 * time.Second}},
		{"interval not whole minutes", Options{Interval: 90 * time.Second}},
		{"negative interval", Options{Interval: -time.Minute}},
		{"negative cuts", Options{Cuts: -1}},
		{"negative replay", Options{Replay: -time.Hour}},
		{"scale above 1", Options{Scale: 1.5}},
		{"negative scale", Options{Scale: -0.1}},
		{"NaN scale", Options{Scale: math.NaN()}},
		{"tiny image", Options{MinImage: 10, MaxImage: 20}},
		{"max below min", Options{MinImage: 5000, MaxImage: 4000}},
		{"unknown election", Options{Elections: []string{"GUB", "PRESIDENCIA"}}},
		{"duplicate election", Options{Elections: []string{"GUB", "GUB"}}},
		{"negative workers", Options{Workers: -2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.opts); err == nil {
				t.Errorf("New(%+v) succeeded, want an error", tt.opts)
			}
		})
	}
}

func TestCutTimes(t *testing.T) {
	n, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	o := n.Options()
	if o.Cuts != 97 || o.Interval != 15*time.Minute || o.Scale != 1 || o.MinImage != 200<<10 || o.MaxImage != 600<<10 || len(o.Elections) != 3 {
		t.Errorf("defaults %+v", o)
	}
	tests := []struct {
		k      int
		id     string
		replay string
	}{
		{0, "20240602_2000", "2024-06-02T20:00:00-06:00"},
		{1, "20240602_2015", "2024-06-02T20:15:00-06:00"},
		{16, "20240603_0000", "2024-06-03T00:00:00-06:00"},
		{96, "20240603_2000", "2024-06-03T20:00:00-06:00"},
	}
	for _, tt := range tests {
		if got := n.CutID(tt.k); got != tt.id {
			t.Errorf("CutID(%d) = %s, want %s", tt.k, got, tt.id)
		}
		if got := n.ReplayTime(tt.k).Format(time.RFC3339); got != tt.replay {
			t.Errorf("ReplayTime(%d) = %s, want %s", tt.k, got, tt.replay)
		}
	}

	// Another start and a compressed replay: ids follow Start (in UTC-6),
	// the data follows the real night.
	start := time.Date(2026, 1, 10, 12, 0, 59, 0, time.UTC) // 06:00:59 UTC-6
	n, err = New(Options{Start: start, Interval: time.Minute, Cuts: 5, Replay: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if got := n.CutID(0); got != "20260110_0600" {
		t.Errorf("CutID(0) = %s, want 20260110_0600", got)
	}
	if got := n.CutID(4); got != "20260110_0604" {
		t.Errorf("CutID(4) = %s, want 20260110_0604", got)
	}
	if got, want := n.ReplayTime(2), time.Date(2024, 6, 3, 8, 0, 0, 0, ieeZone); !got.Equal(want) {
		t.Errorf("ReplayTime(2) = %v, want %v", got, want)
	}
	if got := n.ReplayTime(4); !got.Equal(closing) {
		t.Errorf("ReplayTime(4) = %v, want the final cut %v", got, closing)
	}
}

func TestWriteCutHonoursContext(t *testing.T) {
	n := smallNight(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	root := t.TempDir()
	if _, err := n.WriteCutContext(ctx, root, 8); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if _, err := os.Stat(filepath.Join(root, "json", "main.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("main.json written by a cancelled WriteCut: %v", err)
	}
}
