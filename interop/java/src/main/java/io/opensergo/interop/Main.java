package io.opensergo.interop;

import com.google.protobuf.Message;
import com.google.protobuf.util.JsonFormat;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.opensergo.ConfigKind;
import io.opensergo.OpenSergoClient;
import io.opensergo.proto.router.v1.ClusterFallbackConfig_ClusterConfig;
import io.opensergo.proto.service_contract.v1.MetadataServiceGrpc;
import io.opensergo.proto.service_contract.v1.MethodDescriptor;
import io.opensergo.proto.service_contract.v1.ReportMetadataRequest;
import io.opensergo.proto.service_contract.v1.ServiceContract;
import io.opensergo.proto.service_contract.v1.ServiceDescriptor;
import io.opensergo.proto.service_contract.v1.ServiceMetadata;
import io.opensergo.proto.service_contract.v1.SocketAddress;
import io.opensergo.subscribe.SubscribeKey;
import io.opensergo.subscribe.SubscribedData;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;

/**
 * Subscribes to an OpenSergo control plane with the official Java SDK (io.opensergo:opensergo-java-sdk:0.1.0)
 * for every kind the SDK knows, and prints each push it decoded as one JSON line on stdout.
 *
 * <p>Usage: {@code Main HOST PORT NAMESPACE APP ROUTER_APP EXIT_AFTER_SECONDS [--report-metadata]}
 *
 * <p>The SDK calls a subscriber only if it was registered before the push arrived, and it registers the
 * subscriber after sending the subscribe request (protocol.md 2.8). A control plane that answers at once
 * can therefore fill the SDK's cache before the subscriber exists. So besides the subscriber this program
 * polls the SDK's cache and prints every data list it has not printed yet ("source": "cache").
 *
 * <p>With {@code $OPENSERGO_TOKEN} set, every call (the SDK's stream and the metadata report) carries
 * {@code authorization: Bearer <token>}, for a control plane with auth on ({@link BearerTokenChannelProvider}).
 */
public final class Main {
    private static final PrintStream OUT = new PrintStream(System.out, true, StandardCharsets.UTF_8);
    private static final Set<Object> PRINTED = Collections.newSetFromMap(new IdentityHashMap<>());

    private static final JsonFormat.TypeRegistry TYPES =
            JsonFormat.TypeRegistry.newBuilder().add(ClusterFallbackConfig_ClusterConfig.getDescriptor()).build();
    private static final JsonFormat.Printer FULL = JsonFormat.printer()
            .usingTypeRegistry(TYPES).preservingProtoFieldNames().includingDefaultValueFields()
            .omittingInsignificantWhitespace();
    private static final JsonFormat.Printer SPARSE = JsonFormat.printer()
            .usingTypeRegistry(TYPES).preservingProtoFieldNames().omittingInsignificantWhitespace();

    private Main() {}

    public static void main(String[] args) throws Exception {
        if (args.length < 6) {
            System.err.println("usage: Main HOST PORT NAMESPACE APP ROUTER_APP EXIT_AFTER_SECONDS [--report-metadata]");
            System.exit(2);
        }
        String host = args[0];
        int port = Integer.parseInt(args[1]);
        String namespace = args[2];
        String app = args[3];
        String routerApp = args[4];
        long exitAfterMillis = (long) (Double.parseDouble(args[5]) * 1000);
        boolean reportMetadata = args.length > 6 && args[6].equals("--report-metadata");

        boolean token = BearerTokenChannelProvider.install(System.getenv("OPENSERGO_TOKEN"));
        emit(obj("event", "started", "target", host + ":" + port, "token", token));
        if (reportMetadata) {
            report(host, port, app);
        }
        OpenSergoClient client = new OpenSergoClient(host, port);
        client.start();
        List<SubscribeKey> keys = new ArrayList<>();
        for (ConfigKind kind : ConfigKind.values()) {
            String keyApp = kind == ConfigKind.TRAFFIC_ROUTER_STRATEGY ? routerApp : app;
            SubscribeKey key = new SubscribeKey(namespace, keyApp, kind);
            keys.add(key);
            boolean ok = client.subscribeConfig(key, (subscribeKey, data) -> {
                print("subscriber", client, subscribeKey, data);
                return true;
            });
            emit(obj("event", "subscribe", "namespace", namespace, "app", keyApp, "kind", kind.getKindName(),
                    "ok", ok));
        }
        long deadline = System.currentTimeMillis() + exitAfterMillis;
        while (System.currentTimeMillis() < deadline) {
            for (SubscribeKey key : keys) {
                SubscribedData cached = client.getConfigCache().getDataFor(key);
                if (cached != null) {
                    print("cache", client, key, cached.getData());
                }
            }
            Thread.sleep(50);
        }
        emit(obj("event", "exit"));
        client.close();
        System.exit(0);
    }

    private static void print(String source, OpenSergoClient client, SubscribeKey key, Object data) {
        synchronized (PRINTED) {
            if (data == null || !PRINTED.add(data)) {
                return;
            }
            Map<String, Object> line = obj("event", "push", "source", source, "namespace", key.getNamespace(),
                    "app", key.getApp(), "kind", key.getKind().getKindName());
            line.put("version", client.getConfigCache().getDataVersionFor(key).orElse(null));
            List<Object> items = new ArrayList<>();
            try {
                for (Object item : (List<?>) data) {
                    JsonFormat.Printer printer = key.getKind() == ConfigKind.TRAFFIC_ROUTER_STRATEGY ? SPARSE : FULL;
                    items.add(new Raw(printer.print((Message) item)));
                }
                line.put("data", items);
            } catch (Exception e) {
                line.put("error", e.toString());
            }
            emit(line);
        }
    }

    private static void report(String host, int port, String app) {
        ManagedChannel channel = ManagedChannelBuilder.forAddress(host, port).usePlaintext().build();
        try {
            ReportMetadataRequest request = ReportMetadataRequest.newBuilder()
                    .setAppName(app)
                    .addServiceMetadata(ServiceMetadata.newBuilder()
                            .addListeningAddresses(SocketAddress.newBuilder().setAddress("127.0.0.1").setPortValue(18081))
                            .addProtocols("http")
                            .setServiceContract(ServiceContract.newBuilder().addServices(ServiceDescriptor.newBuilder()
                                    .setName("interop.JavaService")
                                    .addMethods(MethodDescriptor.newBuilder().setName("interop.JavaService.get")
                                            .addHttpPaths("/java").addHttpMethods("GET")))))
                    .build();
            MetadataServiceGrpc.newBlockingStub(channel).withDeadlineAfter(5, TimeUnit.SECONDS).reportMetadata(request);
            emit(obj("event", "metadata", "ok", true, "error", ""));
        } catch (Exception e) {
            emit(obj("event", "metadata", "ok", false, "error", e.toString()));
        } finally {
            channel.shutdownNow();
        }
    }

    // --- minimal JSON writer (keeps the classpath to what the SDK brings) ---

    private static final class Raw {
        final String json;

        Raw(String json) {
            this.json = json;
        }
    }

    private static Map<String, Object> obj(Object... pairs) {
        Map<String, Object> map = new LinkedHashMap<>();
        for (int i = 0; i < pairs.length; i += 2) {
            map.put((String) pairs[i], pairs[i + 1]);
        }
        return map;
    }

    private static void emit(Map<String, Object> line) {
        line.put("ts", System.currentTimeMillis());
        StringBuilder sb = new StringBuilder();
        write(sb, line);
        synchronized (OUT) {
            OUT.println(sb);
        }
    }

    private static void write(StringBuilder sb, Object value) {
        if (value == null) {
            sb.append("null");
        } else if (value instanceof Raw) {
            sb.append(((Raw) value).json);
        } else if (value instanceof Number || value instanceof Boolean) {
            sb.append(value);
        } else if (value instanceof Map) {
            sb.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : ((Map<?, ?>) value).entrySet()) {
                if (!first) {
                    sb.append(',');
                }
                first = false;
                write(sb, String.valueOf(e.getKey()));
                sb.append(':');
                write(sb, e.getValue());
            }
            sb.append('}');
        } else if (value instanceof List) {
            sb.append('[');
            boolean first = true;
            for (Object item : (List<?>) value) {
                if (!first) {
                    sb.append(',');
                }
                first = false;
                write(sb, item);
            }
            sb.append(']');
        } else {
            String s = value.toString();
            sb.append('"');
            for (int i = 0; i < s.length(); i++) {
                char c = s.charAt(i);
                if (c == '"' || c == '\\') {
                    sb.append('\\').append(c);
                } else if (c < 0x20) {
                    sb.append(String.format("\\u%04x", (int) c));
                } else {
                    sb.append(c);
                }
            }
            sb.append('"');
        }
    }
}
