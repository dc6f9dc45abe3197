package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
)

const subscribeMethod = "/io.opensergo.proto.transport.v1.OpenSergoUniversalTransportService/SubscribeConfig"

var subscribeDesc = &grpc.StreamDesc{StreamName: "SubscribeConfig", ServerStreams: true, ClientStreams: true}

// subscriber is one SubscribeConfig stream that behaves as the SDK does: it subscribes to one
// (namespace, app, kind) and ACKs every data push with request_id = response_id.
type subscriber struct {
	identifier string
	version    atomic.Int64 // newest version received
	changedAt  atomic.Int64 // unix ns of the first push newer than the round's base version
	pushes     atomic.Int64
	failed     atomic.Value // error that ended the stream
}

// subscriberSet is every stream of one run, and the round in progress.
type subscriberSet struct {
	subs      []*subscriber
	roundBase atomic.Int64 // a push with a version above this one is the round's change
}

type subscription struct {
	namespace, app, kind string
}

func (s *subscriberSet) open(ctx context.Context, t target, conns []*grpc.ClientConn, n int, sub subscription, prefix string) {
	s.roundBase.Store(1 << 62) // no round yet
	for i := 0; i < n; i++ {
		st := &subscriber{identifier: fmt.Sprintf("%s-%d", prefix, i)}
		s.subs = append(s.subs, st)
		go s.run(ctx, t, conns[i%len(conns)], st, sub)
	}
}

func (s *subscriberSet) run(ctx context.Context, t target, conn *grpc.ClientConn, st *subscriber, sub subscription) {
	stream, err := conn.NewStream(t.callContext(ctx, ""), subscribeDesc, subscribeMethod)
	if err != nil {
		st.failed.Store(err)
		return
	}
	request := subscribeRequest(sub.namespace, sub.app, sub.kind, st.identifier, "1")
	if err := stream.SendMsg(&request); err != nil {
		st.failed.Store(err)
		return
	}
	for {
		var data []byte
		if err := stream.RecvMsg(&data); err != nil {
			if err != io.EOF && ctx.Err() == nil {
				st.failed.Store(err)
			}
			return
		}
		now := time.Now().UnixNano()
		p, err := decodePush(data)
		if err != nil {
			st.failed.Store(err)
			return
		}
		if p.ack != "" { // an answer to a request, not data
			continue
		}
		if p.version > s.roundBase.Load() {
			st.changedAt.CompareAndSwap(0, now)
		}
		if p.version > st.version.Load() {
			st.version.Store(p.version)
		}
		st.pushes.Add(1)
		ack := ackRequest(st.identifier, p.responseID)
		if err := stream.SendMsg(&ack); err != nil {
			st.failed.Store(err)
			return
		}
	}
}

// waitPushed polls until every stream received its first push; it returns how many did.
func (s *subscriberSet) waitPushed(timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		n := 0
		for _, st := range s.subs {
			if st.pushes.Load() > 0 {
				n++
			}
		}
		if n == len(s.subs) || time.Now().After(deadline) {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitAll polls until every stream holds a version of at least `version`; it returns how many do.
func (s *subscriberSet) waitAll(version int64, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		n := 0
		for _, st := range s.subs {
			if st.version.Load() >= version {
				n++
			}
		}
		if n == len(s.subs) || time.Now().After(deadline) {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *subscriberSet) failures() (int, string) {
	n, first := 0, ""
	for _, st := range s.subs {
		if err, ok := st.failed.Load().(error); ok {
			n++
			if first == "" {
				first = err.Error()
			}
		}
	}
	return n, first
}

// waitQuiet returns once a process spends no more CPU than when idle (two 200 ms samples in a row
// within 20 ms, /proc's 10 ms resolution, of the idle rate), or after `limit`.
func waitQuiet(pid int, idleCores float64, limit time.Duration) {
	deadline := time.Now().Add(limit)
	quiet := 0
	for quiet < 2 && time.Now().Before(deadline) {
		before := procCPU(pid)
		time.Sleep(200 * time.Millisecond)
		if (procCPU(pid) - before).Seconds() <= idleCores*0.2+0.02 {
			quiet++
		} else {
			quiet = 0
		}
	}
}

// --- the rule the fan-out changes ----------------------------------------------------------------

type ruleChanger struct {
	t         target
	url       string // the RateLimitStrategy object's REST URL
	app       string
	client    *http.Client
	threshold int
}

// change PUTs the rule with a new threshold and returns its resourceVersion.
func (r *ruleChanger) change() (int64, error) {
	r.threshold++
	body, _ := json.Marshal(map[string]any{
		"apiVersion": "fault-tolerance.opensergo.io/v1alpha1",
		"kind":       "RateLimitStrategy",
		"metadata":   map[string]any{"name": "scale-fanout", "labels": map[string]string{"app": r.app}},
		"spec":       map[string]any{"threshold": r.threshold, "statDurationSeconds": 1},
	})
	req, err := http.NewRequest(http.MethodPut, r.url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if r.t.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.t.token)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return 0, fmt.Errorf("PUT %s: %s: %s", r.url, resp.Status, data)
	}
	var out struct {
		Metadata struct {
			ResourceVersion json.Number `json:"resourceVersion"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return 0, err
	}
	return out.Metadata.ResourceVersion.Int64()
}

// --- fan-out -------------------------------------------------------------------------------------

type fanoutResult struct {
	Streams           int     `json:"streams"`
	Connections       int     `json:"connections"`
	Rounds            int     `json:"rounds"`
	ConnectS          float64 `json:"connect_s"` // until every stream held the first push
	Latency           summary `json:"latency"`   // change (REST PUT sent) -> push received, every stream, every round
	CPCPUUsPerStream  float64 `json:"cp_cpu_us_per_stream_change"`
	GenCPUUsPerStream float64 `json:"gen_cpu_us_per_stream_change"`
	CPCPUSPerChange   float64 `json:"cp_cpu_s_per_change"`
	GenCPUSPerChange  float64 `json:"gen_cpu_s_per_change"`
	CPIdleCores       float64 `json:"cp_idle_cores"` // subtracted from the per-change CPU
	CPKBPerStream     float64 `json:"cp_kb_per_stream"`
	GenKBPerStream    float64 `json:"gen_kb_per_stream"`
	CPRSSMB           float64 `json:"cp_rss_mb"`
	Failed            int     `json:"failed_streams"`
	FirstFailure      string  `json:"first_failure,omitempty"`
	LoadAverageBefore string  `json:"load_average_before"`
	LoadAverageAfter  string  `json:"load_average_after"`
	PushesPerStream   float64 `json:"pushes_per_stream"`
}

type fanoutOptions struct {
	streams, perConn, rounds int
	sub                      subscription
	settle                   time.Duration // after the last receipt, for the ACKs, inside the CPU window
}

func runFanout(t target, o fanoutOptions) (fanoutResult, error) {
	res := fanoutResult{Streams: o.streams, Rounds: o.rounds, LoadAverageBefore: loadAverage()}
	rules := &ruleChanger{t: t, app: o.sub.app, client: &http.Client{Timeout: 60 * time.Second},
		url: fmt.Sprintf("%s/apis/fault-tolerance.opensergo.io/v1alpha1/namespaces/%s/ratelimitstrategies/scale-fanout", t.rest, o.sub.namespace)}
	initial, err := rules.change()
	if err != nil {
		return res, err
	}
	time.Sleep(500 * time.Millisecond)
	cpBase, genBase := procRSSKB(t.cpPID), selfRSSKB()
	nConns := (o.streams + o.perConn - 1) / o.perConn
	conns, err := t.dial(nConns)
	if err != nil {
		return res, err
	}
	defer closeAll(conns)
	res.Connections = nConns
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	set := &subscriberSet{}
	began := time.Now()
	set.open(ctx, t, conns, o.streams, o.sub, "scale-load")
	if got := set.waitAll(initial, 180*time.Second); got < o.streams {
		n, first := set.failures()
		return res, fmt.Errorf("only %d of %d streams received the first push (%d failed: %s)", got, o.streams, n, first)
	}
	res.ConnectS = time.Since(began).Seconds()
	time.Sleep(time.Second) // let the initial ACKs settle before measuring memory and idle CPU
	res.CPKBPerStream = float64(procRSSKB(t.cpPID)-cpBase) / float64(o.streams)
	res.GenKBPerStream = float64(selfRSSKB()-genBase) / float64(o.streams)
	idle := sampleCPU(t.cpPID)
	time.Sleep(time.Second)
	res.CPIdleCores = idle.until(sampleCPU(t.cpPID)).CPCores

	var all []time.Duration
	var cpTotal, genTotal float64
	base := initial
	for round := 0; round < o.rounds; round++ {
		for _, st := range set.subs {
			st.changedAt.Store(0)
		}
		set.roundBase.Store(base)
		before := sampleCPU(t.cpPID)
		version, err := rules.change()
		if err != nil {
			return res, err
		}
		if got := set.waitAll(version, 120*time.Second); got < o.streams {
			n, first := set.failures()
			return res, fmt.Errorf("round %d: only %d of %d streams received version %d (%d failed: %s)",
				round+1, got, o.streams, version, n, first)
		}
		time.Sleep(o.settle)
		waitQuiet(t.cpPID, res.CPIdleCores, 15*time.Second) // the ACKs of this change, not the next
		use := before.until(sampleCPU(t.cpPID))
		cpTotal += use.CPCPUs - res.CPIdleCores*use.Seconds
		genTotal += use.GenCPUs
		var last time.Duration
		for _, st := range set.subs {
			d := time.Duration(st.changedAt.Load() - before.at.UnixNano())
			all = append(all, d)
			last = max(last, d)
		}
		fmt.Fprintf(logOut, "  %d streams, change %d/%d: every stream had it after %.3f s"+
			" (CP %.2f CPU-s, generator %.2f CPU-s, until quiet again after %.1f s)\n",
			o.streams, round+1, o.rounds, last.Seconds(), use.CPCPUs, use.GenCPUs, use.Seconds)
		base = version
	}
	res.Latency = summarize(all)
	res.CPCPUSPerChange = cpTotal / float64(o.rounds)
	res.GenCPUSPerChange = genTotal / float64(o.rounds)
	res.CPCPUUsPerStream = res.CPCPUSPerChange * 1e6 / float64(o.streams)
	res.GenCPUUsPerStream = res.GenCPUSPerChange * 1e6 / float64(o.streams)
	res.CPRSSMB = float64(procRSSKB(t.cpPID)) / 1024
	res.Failed, res.FirstFailure = set.failures()
	var pushes int64
	for _, st := range set.subs {
		pushes += st.pushes.Load()
	}
	res.PushesPerStream = float64(pushes) / float64(o.streams)
	res.LoadAverageAfter = loadAverage()
	return res, nil
}

// --- hold: streams and instances for the dashboard benchmark ------------------------------------

type holdOptions struct {
	streams, perConn, instances, apps int
	sub                               subscription
	concurrency                       int
}

// runHold opens the streams and registers the instances (instance i names stream i as its
// client), prints one line of JSON, and keeps them until stdin closes.
func runHold(t target, o holdOptions, ready func(map[string]any)) error {
	nConns := max(1, (o.streams+o.perConn-1)/o.perConn)
	conns, err := t.dial(nConns)
	if err != nil {
		return err
	}
	defer closeAll(conns)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	set := &subscriberSet{}
	began := time.Now()
	set.open(ctx, t, conns, o.streams, o.sub, "dashboard-load")
	if got := set.waitPushed(180 * time.Second); got < o.streams {
		n, first := set.failures()
		return fmt.Errorf("only %d of %d streams received a push (%d failed: %s)", got, o.streams, n, first)
	}
	connected := time.Since(began).Seconds()
	began = time.Now()
	var errs errorCounts
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < o.concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(o.instances); i = next.Add(1) - 1 {
				clientID := ""
				if int(i) < len(set.subs) {
					clientID = set.subs[i].identifier
				}
				callCtx, callCancel := context.WithTimeout(t.callContext(ctx, clientID), 60*time.Second)
				if err := report(callCtx, conns[w%len(conns)], instanceReport("dash", i, o.apps)); err != nil {
					errs.add(err)
				}
				callCancel()
			}
		}(w)
	}
	wg.Wait()
	if n := errs.total(); n > 0 {
		return fmt.Errorf("%d registrations failed: %s", n, errs.first)
	}
	ready(map[string]any{"streams": o.streams, "instances": o.instances, "connect_s": connected,
		"register_s": time.Since(began).Seconds()})
	_, _ = io.Copy(io.Discard, stdin())
	return nil
}
