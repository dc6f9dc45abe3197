package main

// The few OpenSergo messages this generator sends and reads, encoded by hand with protowire
// (field numbers from proto/opensergo/proto/...): no generated code to build, and no reflection
// on the hot path, so the generator spends its CPU on sockets rather than on encoding.

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// rawCodec passes bytes through; the messages are encoded and decoded here.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }

// Unmarshal copies: gRPC recycles the buffer once this returns.
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "raw" }

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendMessage(b []byte, num protowire.Number, m []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}

// --- io.opensergo.proto.transport.v1 -------------------------------------------------------------

// subscribeRequest: SubscribeRequest{target{namespace 1, app 2, kinds 4}, identifier 6, request_id 7}.
func subscribeRequest(namespace, app, kind, identifier, requestID string) []byte {
	var target []byte
	target = appendString(target, 1, namespace)
	target = appendString(target, 2, app)
	target = appendString(target, 4, kind)
	var b []byte
	b = appendMessage(b, 1, target)
	b = appendString(b, 6, identifier)
	return appendString(b, 7, requestID)
}

// ackRequest: the SDK's reply to a push, SubscribeRequest{response_ack 3 "ACK", status 5 {code 1},
// identifier 6, request_id 7 = the push's response_id}; no target.
func ackRequest(identifier, responseID string) []byte {
	var b []byte
	b = appendString(b, 3, "ACK")
	b = appendMessage(b, 5, appendVarint(nil, 1, 1))
	b = appendString(b, 6, identifier)
	return appendString(b, 7, responseID)
}

// push is what the generator reads of a SubscribeResponse.
type push struct {
	ack        string // 2: non-empty on the control plane's answers to requests (not data)
	hasData    bool   // 6 present
	version    int64  // 6.2
	responseID string // 8
}

func decodePush(b []byte) (push, error) {
	var p push
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		switch {
		case num == 2 && typ == protowire.BytesType:
			p.ack = string(v)
		case num == 8 && typ == protowire.BytesType:
			p.responseID = string(v)
		case num == 6 && typ == protowire.BytesType:
			p.hasData = true
			return eachField(v, func(num protowire.Number, typ protowire.Type, _ []byte, n uint64) error {
				if num == 2 && typ == protowire.VarintType {
					p.version = int64(n)
				}
				return nil
			})
		}
		return nil
	})
	return p, err
}

// --- opensergo.proto.service_contract.v1 ---------------------------------------------------------

// reportRequest: ReportMetadataRequest{app_name 1, node 2 {identifier 1 {host_name 1, pid 2}},
// service_metadata 3 {listening_addresses 1 {address 1, port_value 2}, protocols 2}}.
func reportRequest(app, host string, pid uint32, address string, port uint32) []byte {
	var id []byte
	id = appendString(id, 1, host)
	id = appendVarint(id, 2, uint64(pid))
	node := appendMessage(nil, 1, id)
	var addr []byte
	addr = appendString(addr, 1, address)
	addr = appendVarint(addr, 2, uint64(port))
	service := appendMessage(nil, 1, addr)
	service = appendString(service, 2, "grpc")
	var b []byte
	b = appendString(b, 1, app)
	b = appendMessage(b, 2, node)
	return appendMessage(b, 3, service)
}

// --- opensergo.ext.flowcontrol.v1 (our token service) --------------------------------------------

// leaseBatch: TokenBatch{requests 1 [TokenRequest{id 1, key 2 {namespace 1, app 2, resource 3,
// strategy 4}, lease 3 {count 1}}], client_id 2}.
func leaseBatch(firstID uint64, size int, namespace, app, resource, strategy string, count int, clientID string) []byte {
	var key []byte
	key = appendString(key, 1, namespace)
	key = appendString(key, 2, app)
	key = appendString(key, 3, resource)
	key = appendString(key, 4, strategy)
	lease := appendVarint(nil, 1, uint64(count))
	var b []byte
	for i := 0; i < size; i++ {
		var r []byte
		r = appendVarint(r, 1, firstID+uint64(i))
		r = appendMessage(r, 2, key)
		r = appendMessage(r, 3, lease)
		b = appendMessage(b, 1, r)
	}
	return appendString(b, 2, clientID)
}

// leaseAnswers counts a TokenBatchResponse's responses by code and sums what they granted.
type leaseAnswers struct {
	responses, ok, noRule, other int
	granted                      int64
}

func decodeLeaseAnswers(b []byte) (leaseAnswers, error) {
	var a leaseAnswers
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if num != 1 || typ != protowire.BytesType {
			return nil
		}
		a.responses++
		code := uint64(0)
		err := eachField(v, func(num protowire.Number, typ protowire.Type, _ []byte, n uint64) error {
			switch {
			case num == 2 && typ == protowire.VarintType:
				code = n
			case num == 3 && typ == protowire.VarintType:
				a.granted += int64(int32(n))
			}
			return nil
		})
		switch code {
		case 0:
			a.ok++
		case 1:
			a.noRule++
		default:
			a.other++
		}
		return err
	})
	return a, err
}

// eachField walks one message's fields: bytes fields give v, varints give n; others are skipped.
func eachField(b []byte, visit func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error) error {
	for len(b) > 0 {
		num, typ, tagLen := protowire.ConsumeTag(b)
		if tagLen < 0 {
			return fmt.Errorf("bad tag: %w", protowire.ParseError(tagLen))
		}
		b = b[tagLen:]
		var v []byte
		var n uint64
		var m int
		switch typ {
		case protowire.BytesType:
			v, m = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			n, m = protowire.ConsumeVarint(b)
		default:
			m = protowire.ConsumeFieldValue(num, typ, b)
		}
		if m < 0 {
			return fmt.Errorf("bad field %d: %w", num, protowire.ParseError(m))
		}
		if err := visit(num, typ, v, n); err != nil {
			return err
		}
		b = b[m:]
	}
	return nil
}
