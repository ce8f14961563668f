package apply

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"

	"github.com/prepcast/prepcast/applyproto"
	"github.com/prepcast/prepcast/internal/safepath"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/targets"
)

// PinnedKeyPath is where "prepcast apply --trust-on-first-use" pins the
// institute's key, once a whole package signed with it has verified.
// (Older versions pinned the key offered in a request, before anything
// verified, at .prepcast/publisher.pub; that file is not trusted.)
const PinnedKeyPath = safepath.Reserved + "/institute.pub"

// NoKeyMessage tells a difusor's administrator how to make apply trust the
// institute's key.
const NoKeyMessage = "prepcast apply trusts no institute key: run it with --public-key FILE " +
	"(the institute's manifest.pub; recommended, forced with command=\"prepcast apply --root ROOT --public-key FILE\" " +
	"in ~/.ssh/authorized_keys), or with --trust-on-first-use to pin the key of the first package that verifies"

// TrustOnFirstUseWarning is printed when apply runs with --trust-on-first-use.
const TrustOnFirstUseWarning = "warning: --trust-on-first-use: until a key is pinned, whoever runs prepcast apply first " +
	"decides which key this difusor trusts; give it the institute's key with --public-key instead"

// trustMode is how the difusor trusts the institute's key.
func (o *Options) trustMode() string {
	switch {
	case o.PublicKey != nil:
		return applyproto.TrustPublicKey
	case o.TrustOnFirstUse:
		return applyproto.TrustOnFirstUse
	}
	return applyproto.TrustNone
}

// trustedKey returns the key the difusor already trusts: the configured
// one, or in trust-on-first-use mode the pinned one (nil if none yet).
func (o *Options) trustedKey(ctx context.Context) (ed25519.PublicKey, error) {
	if o.PublicKey != nil {
		return o.PublicKey, nil
	}
	if !o.TrustOnFirstUse {
		return nil, nil
	}
	data, err := readSmall(ctx, o.Target, PinnedKeyPath, 4<<10)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read pinned institute key %s: %w", PinnedKeyPath, err)
	}
	key, err := packager.ParsePublicKey(data)
	if err != nil {
		return nil, targets.Permanent(fmt.Errorf("pinned institute key %s: %w (put the institute's manifest.pub there, or run apply with --public-key)", PinnedKeyPath, err))
	}
	return key, nil
}

// verifyKey returns the key a package must verify with, given the key the
// request names: the trusted key (the request's must match it), or, with
// trust on first use and nothing pinned yet, the request's own, which is
// pinned only after the whole package verified (see pin).
func verifyKey(trusted ed25519.PublicKey, mode, offered string) (key ed25519.PublicKey, pinAfter bool, err error) {
	if mode == applyproto.TrustNone {
		return nil, false, errors.New(NoKeyMessage)
	}
	raw, derr := base64.StdEncoding.DecodeString(offered)
	valid := derr == nil && len(raw) == ed25519.PublicKeySize
	if trusted != nil {
		if mode == applyproto.TrustOnFirstUse && (!valid || !trusted.Equal(ed25519.PublicKey(raw))) {
			return nil, false, fmt.Errorf("the cut is signed with a key other than the one pinned at %s on the difusor; if the institute changed its signing key, the difusor's administrator must confirm it with the institute and run apply with --public-key", PinnedKeyPath)
		}
		return trusted, false, nil
	}
	if !valid {
		return nil, false, errors.New("the publisher named no valid ed25519 public key, and this difusor has pinned none yet")
	}
	return ed25519.PublicKey(raw), true, nil
}

// pin records key at PinnedKeyPath (staged, then renamed).
func pin(ctx context.Context, t targets.Target, key ed25519.PublicKey) error {
	data := packager.EncodePublicKey(key)
	if err := writeAtomic(ctx, t, PinnedKeyPath, data); err != nil {
		return fmt.Errorf("pin institute key: %w", err)
	}
	got, err := t.ReadFile(ctx, PinnedKeyPath)
	if err != nil || !bytes.Equal(got, data) {
		return fmt.Errorf("pin institute key: %s does not read back (%v)", PinnedKeyPath, err)
	}
	return nil
}
