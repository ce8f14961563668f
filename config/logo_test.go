package config

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func pngBytes(t *testing.T, w, h int, noisy bool) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	r := rand.New(rand.NewPCG(1, 2))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := color.NRGBA{R: 200, G: 30, B: 60, A: 255}
			if noisy {
				c = color.NRGBA{R: uint8(r.Uint32()), G: uint8(r.Uint32()), B: uint8(r.Uint32()), A: 255}
			}
			img.Set(x, y, c)
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestReadLogo checks that only whole PNG images of sane size pass, and that
// each refusal says what is wrong.
func TestReadLogo(t *testing.T) {
	dir := t.TempDir()
	good := pngBytes(t, 120, 60, false)
	cases := []struct {
		name string
		data []byte
		want string // "" = accepted
	}{
		{"good", good, ""},
		{"jpeg", []byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"), "is not a PNG image"},
		{"text", []byte("<svg xmlns='http://www.w3.org/2000/svg'/>"), "is not a PNG image"},
		{"empty", nil, "is not a PNG image"},
		{"too wide", pngBytes(t, MaxLogoPixels+1, 1, false), "2001×1 pixels"},
		{"too tall", pngBytes(t, 1, 5000, false), "1×5000 pixels"},
		{"truncated", good[:len(good)/2], "damaged or truncated"},
		{"too many bytes", pngBytes(t, 700, 700, true), "larger than 1024 KiB"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".png")
			if err := os.WriteFile(p, c.data, 0o644); err != nil {
				t.Fatal(err)
			}
			data, err := ReadLogo(p)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused a good logo: %v", err)
			case c.want == "" && !bytes.Equal(data, c.data):
				t.Fatal("ReadLogo did not return the file's bytes")
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("err = %v, want it to say %q", err, c.want)
			}
		})
	}
	if err := CheckLogo(filepath.Join(dir, "missing.png")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing logo: %v", err)
	}
	if err := CheckLogo(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory as logo: %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"20GB": 20e9, "20 GB": 20e9, "500MB": 500e6, "1GiB": 1 << 30, "1.5kB": 1500, "12345": 12345, "0": 0} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"20G", "20 gigs", "-1GB", "", "20GB/s"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

// TestCheckSection checks the defaults and the errors of check: and of the
// public list fields of a target.
func TestCheckSection(t *testing.T) {
	const base = "source: /srv/p\nstate_dir: /var/lib/p\nsigning_key: /etc/p/k\nschedule: {start: \"2024-06-02T20:00\", end: \"2024-06-03T20:00\"}\n" +
		"targets:\n  - {name: d, address: h, user: u, known_hosts: /etc/p/kh, root: /var/www/p"
	c, err := Parse([]byte(base+"}\n"), "/etc/p")
	if err != nil {
		t.Fatal(err)
	}
	mx, _ := time.LoadLocation("America/Mexico_City")
	if want := time.Date(2024, 6, 15, 23, 59, 0, 0, mx); !c.Check.PublicationEnd.Equal(want) {
		t.Errorf("default publication_end = %v, want %v", c.Check.PublicationEnd, want)
	}
	c, err = Parse([]byte(base+", display_name: \"Diario Ejemplo\", url: \"https://d.example/\", logo: logos/d.png, contact: a@d.example}\n"+
		"check: {min_free_disk: 1TB, min_upload_rate: 100Mbit/s, upload_test: 2s, publication_end: \"2024-07-01T00:00\"}\n"), "/etc/p")
	if err != nil {
		t.Fatal(err)
	}
	if c.Check.MinFreeDisk != 1e12 || c.Check.MinUploadRate != 12.5e6 || c.Check.UploadTest != 2*time.Second || c.Check.PublicationEnd.Month() != time.July {
		t.Errorf("check = %+v", c.Check)
	}
	if tg := c.Targets[0]; tg.Logo != "/etc/p/logos/d.png" || tg.DisplayName != "Diario Ejemplo" || tg.Contact != "a@d.example" {
		t.Errorf("target = %+v", tg)
	}
	_, err = Parse([]byte(base+", logo: /l.png, display_name: \"a\\u0007b\"}\ncheck: {min_free_disk: 20 gigs, upload_test: 10h}\n"), "/etc/p")
	for _, want := range []string{"targets[0].logo: is set but url is not", "targets[0].display_name: contains control characters", "check.min_free_disk: \"20 gigs\" is not a size", "check.upload_test: 10h is out of range"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
}
