package config

import (
	"bytes"
	"errors"
	"fmt"
	"image/png"
	"io"
	"io/fs"
	"os"
)

// Bounds of a difusor's logo in the public list.
const (
	MaxLogoBytes  = 1 << 20 // 1 MiB
	MaxLogoPixels = 2000    // width and height each
)

// ReadLogo reads a difusor's logo and checks it: a regular file of at most
// [MaxLogoBytes] that is a whole PNG image (signature, header and image
// data, decoded to the end) of at most [MaxLogoPixels] a side. It returns
// the file's bytes, which the public list embeds as they are.
func ReadLogo(path string) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("file %s does not exist; give the difusor's logo as a PNG file", path)
	}
	if err != nil {
		return nil, fmt.Errorf("read logo: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read logo: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file; give the difusor's logo as a PNG file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxLogoBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read logo %s: %w", path, err)
	}
	if len(data) > MaxLogoBytes {
		return nil, fmt.Errorf("%s is larger than %d KiB; shrink the logo (a list logo needs a few hundred pixels)", path, MaxLogoBytes>>10)
	}
	if err := checkPNG(data); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return data, nil
}

// CheckLogo is [ReadLogo] without keeping the bytes.
func CheckLogo(path string) error {
	_, err := ReadLogo(path)
	return err
}

// checkPNG checks that data is one whole PNG image within the size bounds.
// The header is read first, so a huge image is refused before any pixel is
// decoded.
func checkPNG(data []byte) error {
	cfg, err := png.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("is not a PNG image (%v); export the logo as PNG", err)
	}
	if cfg.Width < 1 || cfg.Height < 1 || cfg.Width > MaxLogoPixels || cfg.Height > MaxLogoPixels {
		return fmt.Errorf("is %d×%d pixels; a logo must be at most %d×%d", cfg.Width, cfg.Height, MaxLogoPixels, MaxLogoPixels)
	}
	if _, err := png.Decode(bytes.NewReader(data)); err != nil {
		return fmt.Errorf("is a damaged or truncated PNG (%v); export the logo again", err)
	}
	return nil
}
