// Package deps pins the module's dependencies while the packages that use them are written.
package deps

import (
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/pkg/sftp"
	_ "go.uber.org/zap"
	_ "go.yaml.in/yaml/v3"
	_ "golang.org/x/crypto/ssh"
	_ "golang.org/x/crypto/ssh/agent"
	_ "golang.org/x/crypto/ssh/knownhosts"
	_ "golang.org/x/sync/errgroup"
	_ "golang.org/x/time/rate"
	_ "modernc.org/sqlite"
)
