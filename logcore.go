package knocker

import (
	"slices"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// currentCaddyCore writes each entry through Caddy's default logger as it is
// at that moment. The whitelist store outlives the config that opened it, so
// it must not keep a logger whose writers a later config may have closed.
type currentCaddyCore struct{ fields []zapcore.Field }

func newLongLivedLogger(name string) *zap.Logger {
	return zap.New(currentCaddyCore{}).Named(name)
}

func (c currentCaddyCore) Enabled(l zapcore.Level) bool { return caddy.Log().Core().Enabled(l) }

func (c currentCaddyCore) With(fields []zapcore.Field) zapcore.Core {
	return currentCaddyCore{append(slices.Clip(c.fields), fields...)}
}

func (c currentCaddyCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	return caddy.Log().Core().With(c.fields).Check(e, ce)
}

func (c currentCaddyCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	return caddy.Log().Core().With(c.fields).Write(e, fields)
}

func (c currentCaddyCore) Sync() error { return caddy.Log().Core().Sync() }
