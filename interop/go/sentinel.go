package main

// With -sentinel-listen, the program also serves HTTP requests through Sentinel-Go
// (github.com/alibaba/sentinel-golang, core only) and turns the RateLimitStrategy and
// FaultToleranceRule pushes it applied into Sentinel flow rules, the way Sentinel's OpenSergo data
// source does: a rule's targets are the resources, a referenced RateLimitStrategy's threshold is
// the token count per stat_duration, requests over it are rejected. Sentinel-Go's own OpenSergo
// data source module cannot be resolved here (docs/interop.md), so this bridge stands in for it.

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"

	sentinel "github.com/alibaba/sentinel-golang/api"
	"github.com/alibaba/sentinel-golang/core/base"
	"github.com/alibaba/sentinel-golang/core/config"
	"github.com/alibaba/sentinel-golang/core/flow"
	"google.golang.org/protobuf/proto"

	commonv1 "opensergo-interop/upstream/common/v1"
	ftv1 "opensergo-interop/upstream/fault_tolerance/v1"
)

type sentinelBridge struct {
	mu     sync.Mutex
	out    *output
	limits map[string]*ftv1.RateLimitStrategy
	rules  []*ftv1.FaultToleranceRule
}

func startSentinel(listen, app, logDir string, out *output) (*sentinelBridge, error) {
	conf := config.NewDefaultConfig()
	conf.Sentinel.App.Name = app
	if logDir == "" {
		logDir = filepath.Join(os.TempDir(), fmt.Sprintf("opensergo-interop-sentinel-%d", os.Getpid()))
	}
	conf.Sentinel.Log.Dir = logDir
	if err := sentinel.InitWithConfig(conf); err != nil {
		return nil, err
	}
	bridge := &sentinelBridge{out: out, limits: map[string]*ftv1.RateLimitStrategy{}}
	server := &http.Server{Addr: listen, Handler: http.HandlerFunc(bridge.serve)}
	go func() {
		if err := server.ListenAndServe(); err != nil {
			out.emit(map[string]any{"event": "sentinel_http_error", "error": err.Error()})
		}
	}()
	out.emit(map[string]any{"event": "sentinel_started", "listen": listen})
	return bridge, nil
}

// serve guards every request with the resource "<METHOD>:<path>" (our framework middleware's naming).
func (b *sentinelBridge) serve(w http.ResponseWriter, r *http.Request) {
	entry, blocked := sentinel.Entry(r.Method+":"+r.URL.Path, sentinel.WithTrafficType(base.Inbound))
	if blocked != nil {
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprintf(w, "blocked by Sentinel: %s\n", blocked.BlockType().String())
		return
	}
	defer entry.Exit()
	fmt.Fprintln(w, "ok")
}

// applied is called with every push the client applied.
func (b *sentinelBridge) applied(kind string, data []proto.Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch kind {
	case ftGroup + "RateLimitStrategy":
		b.limits = map[string]*ftv1.RateLimitStrategy{}
		for _, message := range data {
			limit := message.(*ftv1.RateLimitStrategy)
			b.limits[limit.GetName()] = limit
		}
	case ftGroup + "FaultToleranceRule":
		b.rules = b.rules[:0]
		for _, message := range data {
			b.rules = append(b.rules, message.(*ftv1.FaultToleranceRule))
		}
	default:
		return
	}
	var rules []*flow.Rule
	for _, rule := range b.rules {
		for _, ref := range rule.GetStrategies() {
			limit, ok := b.limits[ref.GetName()]
			if ref.GetKind() != "RateLimitStrategy" || !ok {
				continue
			}
			for _, target := range rule.GetTargets() {
				rules = append(rules, &flow.Rule{
					Resource:               target.GetTargetResourceName(),
					TokenCalculateStrategy: flow.Direct,
					ControlBehavior:        flow.Reject,
					Threshold:              float64(limit.GetThreshold()),
					StatIntervalInMs:       statIntervalMillis(limit),
				})
			}
		}
	}
	sort.Slice(rules, func(i, j int) bool { return rules[i].Resource < rules[j].Resource })
	_, err := flow.LoadRules(rules)
	loaded := make([]map[string]any, 0, len(rules))
	for _, rule := range rules {
		loaded = append(loaded, map[string]any{
			"resource": rule.Resource, "threshold": rule.Threshold, "statIntervalInMs": rule.StatIntervalInMs,
		})
	}
	b.out.emit(map[string]any{"event": "sentinel_rules", "rules": loaded, "error": errText(err)})
}

func statIntervalMillis(limit *ftv1.RateLimitStrategy) uint32 {
	duration := uint32(limit.GetStatDuration())
	if duration == 0 {
		return 1000
	}
	switch limit.GetStatDurationTimeUnit() {
	case commonv1.TimeUnit_MILLISECOND:
		return duration
	case commonv1.TimeUnit_MINUTE:
		return duration * 60000
	default: // SECOND, and UNKNOWN as the upstream control plane sends statDurationSeconds
		return duration * 1000
	}
}
