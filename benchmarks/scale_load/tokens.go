package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
)

const connectMethod = "/opensergo.ext.flowcontrol.v1.TokenService/Connect"

var connectDesc = &grpc.StreamDesc{StreamName: "Connect", ServerStreams: true, ClientStreams: true}

type tokenOptions struct {
	streams, batch, count int
	warmup, duration      time.Duration
	app, resource, rule   string
}

type tokenResult struct {
	Streams      int     `json:"streams"`
	Batch        int     `json:"batch"` // lease requests per TokenBatch
	LeasesPerS   float64 `json:"leases_per_s"`
	GrantedPerS  float64 `json:"granted_tokens_per_s"`
	OK           int64   `json:"ok"`
	NoRule       int64   `json:"no_rule"`
	Other        int64   `json:"other_codes"`
	Errors       int64   `json:"errors"`
	FirstError   string  `json:"first_error,omitempty"`
	BatchLatency summary `json:"batch_round_trip"`
	CPU          cpuUse  `json:"cpu"`
}

// runTokens keeps `streams` Connect streams, each with one lease batch in flight (closed loop, as
// a data plane's token client does under load), and counts the answers in the measured window.
func runTokens(t target, conns []*grpc.ClientConn, o tokenOptions) tokenResult {
	start := time.Now()
	windowStart := start.Add(o.warmup)
	end := windowStart.Add(o.duration)
	var ok, noRule, other, granted atomic.Int64
	var errs errorCounts
	var lat latencies
	var wg sync.WaitGroup
	for s := 0; s < o.streams; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			clientID := fmt.Sprintf("scale-load-tokens-%d", s)
			stream, err := conns[s%len(conns)].NewStream(t.callContext(ctx, clientID), connectDesc, connectMethod)
			if err != nil {
				errs.add(err)
				return
			}
			var own []time.Duration
			defer func() { lat.add(own) }()
			id := uint64(1)
			for time.Now().Before(end) {
				batch := leaseBatch(id, o.batch, t.namespace, o.app, o.resource, o.rule, o.count, clientID)
				id += uint64(o.batch)
				began := time.Now()
				if err := stream.SendMsg(&batch); err != nil {
					errs.add(err)
					return
				}
				var data []byte
				if err := stream.RecvMsg(&data); err != nil {
					errs.add(err)
					return
				}
				done := time.Now()
				answers, err := decodeLeaseAnswers(data)
				if err != nil {
					errs.add(err)
					return
				}
				if done.Before(windowStart) || done.After(end) {
					continue
				}
				ok.Add(int64(answers.ok))
				noRule.Add(int64(answers.noRule))
				other.Add(int64(answers.other))
				granted.Add(answers.granted)
				own = append(own, done.Sub(began))
			}
			_ = stream.CloseSend()
		}(s)
	}
	time.Sleep(time.Until(windowStart))
	before := sampleCPU(t.cpPID)
	time.Sleep(time.Until(end))
	cpu := before.until(sampleCPU(t.cpPID))
	wg.Wait()
	seconds := o.duration.Seconds()
	return tokenResult{
		Streams: o.streams, Batch: o.batch,
		LeasesPerS:  float64(ok.Load()+noRule.Load()+other.Load()) / seconds,
		GrantedPerS: float64(granted.Load()) / seconds,
		OK:          ok.Load(), NoRule: noRule.Load(), Other: other.Load(),
		Errors: errs.total(), FirstError: errs.first,
		BatchLatency: summarize(lat.values),
		CPU:          cpu,
	}
}
