// Command opensergo-interop-go subscribes to an OpenSergo control plane the way the official Go SDK
// (github.com/opensergo/opensergo-go, pkg/client) does, and prints every push it decoded as a JSON
// line on stdout. Diagnostics go to stderr.
//
// The official Go SDK's subscribe client cannot be resolved from the Go module proxy available to
// this project (see docs/interop.md), so this program reproduces its wire behaviour with grpc-go and
// protobuf-go, decoding with Go bindings generated from the upstream .proto files shipped in the
// official Java SDK jar (interop/build.py). Metadata reporting (-report-metadata) uses the official
// Go module's own generated MetadataService client.
//
// Wire behaviour reproduced from the Go SDK:
//   - one SubscribeRequest per kind: target{namespace, app, kinds=[kind]}, no identifier, no request_id;
//   - a response with a non-empty ack and code 1 or 4000..4099 is a reply, not a push: ignored;
//   - a push for a kind that was not subscribed gets no reply;
//   - cached version > pushed version: ACK with code 4010, data discarded (an equal version is applied);
//   - every Any is unpacked into the kind's registered message; a failure is ACKed with code 4007;
//   - a push without dataWithVersion: 4010 if something newer is cached, else NACK 4000 (the SDK panics);
//   - success: ACK{response_ack "ACK", status{code 1}, request_id = response_id};
//   - after a stream error, reconnect every -reconnect (the SDK: 10 s) and re-subscribe; the cache
//     (data and versions) survives reconnects.
//
// With -sentinel-listen it also serves HTTP through Sentinel-Go with the pushed rate limits (sentinel.go).
//
// With -token (default: $OPENSERGO_TOKEN) every call carries "authorization: Bearer <token>" metadata,
// for a control plane with auth on (grpc-go's per-RPC credentials, as any Go data plane would set them).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	scv1 "github.com/opensergo/opensergo-go/proto/service_contract/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	ftv1 "opensergo-interop/upstream/fault_tolerance/v1"
	_ "opensergo-interop/upstream/router/v1" // registers ClusterFallbackConfig_ClusterConfig for protojson
	tpv1 "opensergo-interop/upstream/transport/v1"
)

const (
	subscribeMethod = "/io.opensergo.proto.transport.v1.OpenSergoUniversalTransportService/SubscribeConfig"

	codeSuccess         = 1
	codeErrorUnknown    = 4000
	codeHandlerError    = 4007
	codeVersionOutdated = 4010
	codeUpperBound      = 4100

	ftGroup = "fault-tolerance.opensergo.io/v1alpha1/"
	trKind  = "traffic.opensergo.io/v1alpha1/TrafficRouter"
)

// kinds: full kind name -> the message its payloads decode into (the Go SDK's registry).
var kinds = map[string]func() proto.Message{
	ftGroup + "FaultToleranceRule":       func() proto.Message { return &ftv1.FaultToleranceRule{} },
	ftGroup + "RateLimitStrategy":        func() proto.Message { return &ftv1.RateLimitStrategy{} },
	ftGroup + "ThrottlingStrategy":       func() proto.Message { return &ftv1.ThrottlingStrategy{} },
	ftGroup + "ConcurrencyLimitStrategy": func() proto.Message { return &ftv1.ConcurrencyLimitStrategy{} },
	ftGroup + "CircuitBreakerStrategy":   func() proto.Message { return &ftv1.CircuitBreakerStrategy{} },
	trKind:                               func() proto.Message { return &routev3.RouteConfiguration{} },
}

type subscribeKey struct{ namespace, app, kind string }

type cached struct {
	version int64
	data    []proto.Message
}

// output writes one JSON object per line; safe for concurrent use.
type output struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (o *output) emit(fields map[string]any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fields["ts"] = time.Now().UnixMilli()
	if err := o.enc.Encode(fields); err != nil {
		fmt.Fprintln(os.Stderr, "cannot write output:", err)
	}
}

type client struct {
	conn      *grpc.ClientConn
	keys      []subscribeKey
	out       *output
	cache     map[subscribeKey]cached
	reconnect time.Duration
	streams   int
	sentinel  *sentinelBridge
}

func main() {
	host := flag.String("host", "127.0.0.1", "control plane host")
	port := flag.Int("port", 10246, "control plane gRPC port")
	namespace := flag.String("namespace", "default", "namespace to subscribe in")
	app := flag.String("app", "foo-app", "app to subscribe for (fault-tolerance kinds)")
	routerApp := flag.String("router-app", "", "app to subscribe TrafficRouter for (default: -app)")
	kindList := flag.String("kinds", "", "comma-separated simple or full kind names (default: all six)")
	reconnect := flag.Duration("reconnect", 10*time.Second, "delay before reopening a broken stream (Go SDK: 10s)")
	exitAfter := flag.Duration("exit-after", 0, "exit after this long (0: run until SIGTERM/SIGINT)")
	reportMetadata := flag.Bool("report-metadata", false, "report metadata once with the official Go module's MetadataService client")
	sentinelLogDir := flag.String("sentinel-log-dir", "", "Sentinel-Go log directory (default: a new one under the temp dir)")
	sentinelListen := flag.String("sentinel-listen", "", "also serve HTTP on this address through Sentinel-Go, with flow rules from the pushes (see sentinel.go)")
	token := flag.String("token", os.Getenv("OPENSERGO_TOKEN"), "access token sent as 'authorization: Bearer' metadata (default: $OPENSERGO_TOKEN)")
	flag.Parse()

	out := &output{enc: json.NewEncoder(os.Stdout)}
	if *routerApp == "" {
		*routerApp = *app
	}
	keys, err := subscribeKeys(*namespace, *app, *routerApp, *kindList)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	target := net.JoinHostPort(*host, strconv.Itoa(*port))
	options := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if *token != "" {
		options = append(options, grpc.WithPerRPCCredentials(bearerToken(*token)))
	}
	conn, err := grpc.NewClient(target, options...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		os.Exit(1)
	}
	defer conn.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *exitAfter > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *exitAfter)
		defer cancel()
	}
	out.emit(map[string]any{"event": "started", "target": target})
	if *reportMetadata {
		report(ctx, conn, *app, out)
	}
	c := &client{conn: conn, keys: keys, out: out, cache: map[subscribeKey]cached{}, reconnect: *reconnect}
	if *sentinelListen != "" {
		if c.sentinel, err = startSentinel(*sentinelListen, *app, *sentinelLogDir, out); err != nil {
			fmt.Fprintln(os.Stderr, "sentinel:", err)
			os.Exit(1)
		}
	}
	c.run(ctx)
	out.emit(map[string]any{"event": "exit"})
}

func subscribeKeys(namespace, app, routerApp, list string) ([]subscribeKey, error) {
	var names []string
	if strings.TrimSpace(list) == "" {
		names = []string{
			ftGroup + "FaultToleranceRule", ftGroup + "RateLimitStrategy", ftGroup + "ThrottlingStrategy",
			ftGroup + "ConcurrencyLimitStrategy", ftGroup + "CircuitBreakerStrategy", trKind,
		}
	} else {
		for _, name := range strings.Split(list, ",") {
			name = strings.TrimSpace(name)
			if !strings.Contains(name, "/") {
				if name == "TrafficRouter" {
					name = trKind
				} else {
					name = ftGroup + name
				}
			}
			if _, ok := kinds[name]; !ok {
				return nil, fmt.Errorf("unknown kind %q", name)
			}
			names = append(names, name)
		}
	}
	keys := make([]subscribeKey, 0, len(names))
	for _, kind := range names {
		keyApp := app
		if kind == trKind {
			keyApp = routerApp
		}
		keys = append(keys, subscribeKey{namespace, keyApp, kind})
	}
	return keys, nil
}

// run keeps one stream open until ctx ends, reconnecting like the Go SDK's keepalive loop.
func (c *client) run(ctx context.Context) {
	for ctx.Err() == nil {
		err := c.stream(ctx)
		if ctx.Err() != nil {
			return
		}
		c.out.emit(map[string]any{"event": "stream_end", "stream": c.streams, "error": errText(err)})
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.reconnect):
		}
	}
}

func (c *client) stream(ctx context.Context) error {
	desc := &grpc.StreamDesc{StreamName: "SubscribeConfig", ServerStreams: true, ClientStreams: true}
	stream, err := c.conn.NewStream(ctx, desc, subscribeMethod)
	if err != nil {
		return err
	}
	c.streams++
	c.out.emit(map[string]any{"event": "stream_open", "stream": c.streams})
	for _, key := range c.keys {
		request := &tpv1.SubscribeRequest{
			Target: &tpv1.SubscribeRequestTarget{Namespace: key.namespace, App: key.app, Kinds: []string{key.kind}},
			OpType: tpv1.SubscribeOpType_SUBSCRIBE,
		}
		if err := stream.SendMsg(request); err != nil {
			return err
		}
		c.out.emit(map[string]any{"event": "subscribe", "namespace": key.namespace, "app": key.app, "kind": key.kind})
	}
	for {
		response := &tpv1.SubscribeResponse{}
		if err := stream.RecvMsg(response); err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("stream ended by the server")
			}
			return err
		}
		if reply := c.handle(response); reply != nil {
			if err := stream.SendMsg(reply); err != nil {
				return err
			}
		}
	}
}

func (c *client) handle(response *tpv1.SubscribeResponse) *tpv1.SubscribeRequest {
	code := response.GetStatus().GetCode()
	if response.GetAck() != "" && (code == codeSuccess || (code >= codeErrorUnknown && code < codeUpperBound)) {
		c.out.emit(map[string]any{
			"event": "reply", "ack": response.GetAck(), "code": code,
			"message": response.GetStatus().GetMessage(), "responseId": response.GetResponseId(),
		})
		return nil
	}
	key := subscribeKey{response.GetNamespace(), response.GetApp(), response.GetKind()}
	line := map[string]any{
		"event": "push", "namespace": key.namespace, "app": key.app, "kind": key.kind,
		"status": code, "statusMessage": response.GetStatus().GetMessage(),
		"responseId": response.GetResponseId(), "controlPlane": response.GetControlPlane().GetIdentifier(),
		"applied": false, "stream": c.streams,
	}
	ack := func(ackFlag string, code int32, message string) *tpv1.SubscribeRequest {
		line["ack"] = map[string]any{"flag": ackFlag, "code": code, "message": message}
		c.out.emit(line)
		return &tpv1.SubscribeRequest{
			ResponseAck: ackFlag,
			RequestId:   response.GetResponseId(),
			Status:      &tpv1.Status{Code: code, Message: message},
		}
	}
	factory, known := kinds[key.kind]
	if !known {
		line["error"] = "unknown kind"
		c.out.emit(line) // the Go SDK logs and does not reply
		return nil
	}
	current, hasCached := c.cache[key]
	dwv := response.GetDataWithVersion()
	if dwv == nil {
		line["version"] = nil
		if hasCached && current.version > 0 {
			return ack("ACK", codeVersionOutdated, "outdated version")
		}
		return ack("NACK", codeErrorUnknown, "push without dataWithVersion")
	}
	line["version"] = dwv.GetVersion()
	if hasCached && current.version > dwv.GetVersion() {
		line["cachedVersion"] = current.version
		return ack("ACK", codeVersionOutdated, "outdated version")
	}
	decoded := make([]proto.Message, 0, len(dwv.GetData()))
	for _, payload := range dwv.GetData() {
		message := factory()
		if err := anypb.UnmarshalTo(payload, message, proto.UnmarshalOptions{}); err != nil {
			line["error"] = err.Error()
			line["typeUrl"] = payload.GetTypeUrl()
			return ack("ACK", codeHandlerError, err.Error()+"|")
		}
		decoded = append(decoded, message)
	}
	c.cache[key] = cached{version: dwv.GetVersion(), data: decoded}
	items := make([]json.RawMessage, 0, len(decoded))
	for _, message := range decoded {
		options := protojson.MarshalOptions{UseProtoNames: true}
		if key.kind != trKind {
			options.EmitUnpopulated = true // enums at 0 and absent sub-messages become visible
		}
		text, err := options.Marshal(message)
		if err != nil {
			line["error"] = err.Error()
			return ack("ACK", codeHandlerError, err.Error()+"|")
		}
		items = append(items, json.RawMessage(text))
	}
	line["data"] = items
	line["applied"] = true
	reply := ack("ACK", codeSuccess, "")
	if c.sentinel != nil {
		c.sentinel.applied(key.kind, decoded)
	}
	return reply
}

// report calls ReportMetadata once through the official Go module's generated client.
func report(ctx context.Context, conn *grpc.ClientConn, app string, out *output) {
	hostname, _ := os.Hostname()
	request := &scv1.ReportMetadataRequest{
		AppName: app,
		Node: &scv1.Node{Identifier: &scv1.NodeIdentifier{
			HostName: hostname, Pid: uint32(os.Getpid()),
		}},
		ServiceMetadata: []*scv1.ServiceMetadata{{
			ListeningAddresses: []*scv1.SocketAddress{{Address: "127.0.0.1", PortValue: 18080}},
			Protocols:          []string{"grpc"},
			ServiceContract: &scv1.ServiceContract{Services: []*scv1.ServiceDescriptor{{
				Name:    "interop.Echo",
				Methods: []*scv1.MethodDescriptor{{Name: "interop.Echo.Say", InputTypes: []string{"interop.Msg"}, OutputTypes: []string{"interop.Msg"}}},
			}}},
		}},
	}
	callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := scv1.NewMetadataServiceClient(conn).ReportMetadata(callCtx, request)
	out.emit(map[string]any{"event": "metadata", "ok": err == nil, "error": errText(err)})
}

// bearerToken is a per-RPC credential: "authorization: Bearer <token>" on every call. It allows a
// plaintext channel because the official SDKs dial plaintext (a sidecar or mesh does TLS).
type bearerToken string

func (t bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

func (bearerToken) RequireTransportSecurity() bool { return false }

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
