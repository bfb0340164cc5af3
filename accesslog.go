package knocker

import (
	"errors"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Caddy's access log records the request headers as they arrived, X-Api-Key
// included, unless the log's encoder removes it (format filter ...). Knock
// warns about exactly the logs that would write the key: it encodes a probe
// access entry, carrying a marker key, with the encoder of every log that
// receives this server's access entries, and looks for the marker in the
// output. Nothing is written anywhere.
//
// Caddy keeps a log's provisioned encoder in an unexported field
// (BaseLog.encoder; EncoderRaw is cleared once loaded) and the config in
// caddy.Context.cfg, so both are read by reflection. If a Caddy version
// renames them, keyLeakingAccessLogs reports that it cannot tell and the
// caller warns as if every access log leaked (fail towards the warning).

const accessLogProbeKey = "knocker-access-log-probe-a3f9"

var errAccessLogsUnreadable = errors.New("cannot read Caddy's log configuration in this version")

// keyLeakingAccessLogs returns the names of the logs that would record
// X-Api-Key from srv's access entries.
func keyLeakingAccessLogs(ctx caddy.Context, srv *caddyhttp.Server) ([]string, error) {
	if srv.Logs == nil {
		return nil, nil // access logging is off
	}
	logs, err := configuredLogs(ctx)
	if err != nil {
		return nil, err
	}
	names := accessLoggerNames(srv.Logs)
	var leaking []string
	for name, cl := range logs {
		if cl == nil || !slices.ContainsFunc(names, func(n string) bool { return logAccepts(cl, n) }) {
			continue
		}
		enc, err := logEncoder(cl)
		if err != nil {
			return nil, err
		}
		if enc == nil || encodesProbeKey(enc) {
			leaking = append(leaking, name)
		}
	}
	slices.Sort(leaking)
	return leaking, nil
}

// accessLoggerNames lists the logger names srv's access entries can carry
// (as Caddy's ServerLogConfig.wrapLogger names them; "" is the bare one).
func accessLoggerNames(lc *caddyhttp.ServerLogConfig) []string {
	const base = "http.log.access"
	name := func(n string) string {
		if n == "" {
			return base
		}
		return base + "." + n
	}
	names := []string{name(lc.DefaultLoggerName)}
	for _, ns := range lc.LoggerNames {
		for _, n := range ns {
			names = append(names, name(n))
		}
	}
	return names
}

// logAccepts is Caddy's CustomLog.loggerAllowed for a logger name, widened
// to every log that includes some access logger: the log_name directive
// can name access loggers at request time.
func logAccepts(cl *caddy.CustomLog, name string) bool {
	for _, inc := range cl.Include {
		if inc == "http.log.access" || strings.HasPrefix(inc, "http.log.access.") {
			return true
		}
	}
	if len(cl.Include) == 0 && len(cl.Exclude) == 0 {
		return true
	}
	name += "."
	longest := func(namespaces []string) int {
		n := 0
		for _, ns := range namespaces {
			if strings.HasPrefix(name, ns+".") && len(ns) > n {
				n = len(ns)
			}
		}
		return n
	}
	accept, reject := longest(cl.Include), longest(cl.Exclude)
	for _, ns := range cl.Exclude {
		if ns == "*" {
			return false
		}
	}
	if len(cl.Include) > 0 && accept == 0 {
		return false
	}
	return accept > reject || (len(cl.Include) == 0 && reject == 0)
}

// encodesProbeKey reports whether enc writes X-Api-Key of an access entry
// built the way Caddy's server builds it (the request added with With).
func encodesProbeKey(enc zapcore.Encoder) bool {
	r, err := http.NewRequest(http.MethodPost, "http://knocker.invalid/knock", http.NoBody)
	if err != nil {
		return true
	}
	r.RemoteAddr = "192.0.2.1:1"
	r.Header.Set("X-Api-Key", accessLogProbeKey)
	clone := enc.Clone()
	zap.Object("request", caddyhttp.LoggableHTTPRequest{Request: r}).AddTo(clone)
	buf, err := clone.EncodeEntry(zapcore.Entry{
		Level:      zapcore.InfoLevel,
		Time:       time.Now(),
		LoggerName: "http.log.access",
		Message:    "handled request",
	}, []zapcore.Field{zap.Int("status", http.StatusUnauthorized)})
	if err != nil {
		return true
	}
	defer buf.Free()
	return strings.Contains(buf.String(), accessLogProbeKey)
}

var (
	configPtrType = reflect.TypeFor[*caddy.Config]()
	encoderType   = reflect.TypeFor[zapcore.Encoder]()
)

// configuredLogs returns the running config's provisioned logs.
func configuredLogs(ctx caddy.Context) (map[string]*caddy.CustomLog, error) {
	f := reflect.ValueOf(&ctx).Elem().FieldByName("cfg")
	if !f.IsValid() || f.Type() != configPtrType {
		return nil, errAccessLogsUnreadable
	}
	cfg := *(**caddy.Config)(unsafe.Pointer(f.UnsafeAddr()))
	if cfg == nil || cfg.Logging == nil {
		return nil, errAccessLogsUnreadable
	}
	return cfg.Logging.Logs, nil
}

// logEncoder returns cl's provisioned encoder.
func logEncoder(cl *caddy.CustomLog) (zapcore.Encoder, error) {
	f := reflect.ValueOf(cl).Elem().FieldByName("encoder")
	if !f.IsValid() || f.Type() != encoderType {
		return nil, errAccessLogsUnreadable
	}
	return *(*zapcore.Encoder)(unsafe.Pointer(f.UnsafeAddr())), nil
}

const accessLogFilterHint = "remove the header in the log's format: log { format filter { request>headers>X-Api-Key delete } }"

// warnIfAccessLogsRecordTheKey warns once per config about every log that
// would write a knock's API key.
func (k *Knock) warnIfAccessLogsRecordTheKey(ctx caddy.Context, srv *caddyhttp.Server) {
	leaking, err := keyLeakingAccessLogs(ctx, srv)
	switch {
	case err != nil:
		k.logger.Warn("access logs of this server may record X-Api-Key: "+accessLogFilterHint, zap.Error(err))
	case len(leaking) > 0:
		k.logger.Warn("access logs of this server record X-Api-Key: "+accessLogFilterHint, zap.Strings("logs", leaking))
	}
}
