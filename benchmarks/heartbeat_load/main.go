// Load generator for benchmarks/hardening.py: ReportMetadata heartbeats as fast as one control
// plane answers them. Requests come pre-serialized from the Python side (a file of 4-byte
// big-endian lengths and protobuf messages), so this program needs no generated code: a codec
// passes the bytes through. Each request is first sent once (a registration), then the loops
// cycle through them (heartbeats). Prints {"answered": N, "errors": E} for the measured window.
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/metadata"
)

type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = data
	return nil
}
func (rawCodec) Name() string { return "raw" }

var _ encoding.Codec = rawCodec{}

func readRequests(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for len(data) >= 4 {
		n := binary.BigEndian.Uint32(data)
		out = append(out, data[4:4+n])
		data = data[4+n:]
	}
	return out, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:10246", "control plane gRPC address")
	method := flag.String("method", "/opensergo.proto.service_contract.v1.MetadataService/ReportMetadata",
		"the unary method to call (another one to calibrate against a no-op server)")
	token := flag.String("token", "", "bearer token")
	namespace := flag.String("namespace", "default", "opensergo-namespace header")
	file := flag.String("requests", "", "pre-serialized ReportMetadataRequests")
	conns := flag.Int("conns", 4, "HTTP/2 connections")
	concurrency := flag.Int("concurrency", 64, "calls in flight")
	warmup := flag.Duration("warmup", 2*time.Second, "not measured")
	duration := flag.Duration("duration", 10*time.Second, "measured window")
	flag.Parse()

	requests, err := readRequests(*file)
	if err != nil || len(requests) == 0 {
		fmt.Fprintln(os.Stderr, "cannot read requests:", err)
		os.Exit(2)
	}
	var clients []*grpc.ClientConn
	for i := 0; i < *conns; i++ {
		conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		clients = append(clients, conn)
	}
	md := metadata.Pairs("opensergo-namespace", *namespace)
	if *token != "" {
		md.Append("authorization", "Bearer "+*token)
	}
	ctx := metadata.NewOutgoingContext(context.Background(), md)
	call := func(conn *grpc.ClientConn, request []byte) error {
		var reply []byte
		callCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return conn.Invoke(callCtx, *method, &request, &reply)
	}
	for i, request := range requests { // registrations
		if err := call(clients[i%len(clients)], request); err != nil {
			fmt.Fprintln(os.Stderr, "registration failed:", err)
			os.Exit(1)
		}
	}
	start := time.Now().Add(*warmup)
	end := start.Add(*duration)
	var answered, errors atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < *concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			conn := clients[w%len(clients)]
			for i := w; ; i += *concurrency {
				now := time.Now()
				if now.After(end) {
					return
				}
				err := call(conn, requests[i%len(requests)])
				if now.After(start) {
					if err != nil {
						errors.Add(1)
					} else {
						answered.Add(1)
					}
				}
			}
		}(w)
	}
	wg.Wait()
	out, _ := json.Marshal(map[string]int64{"answered": answered.Load(), "errors": errors.Load()})
	fmt.Println(string(out))
}
