package main

import (
	"io"
	"os"
	"path/filepath"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/prepcast/prepcast/config"
)

// newLogger logs readable lines to the console (warnings and errors, or
// everything with verbose) and JSON lines at the configured level to the
// log file under state_dir. The returned function flushes and closes it.
func newLogger(c *config.Config, console io.Writer, verbose bool) (*zap.Logger, func(), error) {
	level := zapcore.InfoLevel
	if c != nil && c.Log.Level != "" {
		if err := level.Set(c.Log.Level); err != nil {
			return nil, nil, err
		}
	}
	consoleLevel := zapcore.WarnLevel
	if verbose {
		consoleLevel = level
	}
	encCfg := zap.NewDevelopmentEncoderConfig()
	encCfg.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05")
	cores := []zapcore.Core{zapcore.NewCore(zapcore.NewConsoleEncoder(encCfg), zapcore.AddSync(console), consoleLevel)}
	closeFn := func() {}
	if c != nil {
		p := c.Log.File
		if p == "" {
			p = filepath.Join(c.StateDir, "prepcast.log")
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, nil, err
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return nil, nil, err
		}
		jsonCfg := zap.NewProductionEncoderConfig()
		jsonCfg.EncodeTime = zapcore.RFC3339NanoTimeEncoder
		cores = append(cores, zapcore.NewCore(zapcore.NewJSONEncoder(jsonCfg), zapcore.AddSync(f), level))
		closeFn = func() { f.Sync(); f.Close() }
	}
	log := zap.New(zapcore.NewTee(cores...)).With(zap.Int("pid", os.Getpid()))
	return log, func() { _ = log.Sync(); closeFn() }, nil
}
