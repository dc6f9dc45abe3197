package io.opensergo.interop;

import io.grpc.ClientInterceptor;
import io.grpc.ManagedChannelBuilder;
import io.grpc.ManagedChannelProvider;
import io.grpc.ManagedChannelRegistry;
import io.grpc.Metadata;
import io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.MetadataUtils;

/**
 * Makes every channel built with {@code ManagedChannelBuilder.forAddress} carry
 * {@code authorization: Bearer <token>} on each call, for a control plane with auth on.
 *
 * <p>The official Java SDK (0.1.0) builds its channel itself ({@code ManagedChannelBuilder.forAddress(host,
 * port).usePlaintext().build()}) and has no setting for call metadata. grpc-java picks the builder from the
 * highest-priority {@link ManagedChannelProvider} in {@link ManagedChannelRegistry}, a public extension point:
 * registering this provider (priority above Netty's 5) gives the SDK a Netty builder with a header-attaching
 * interceptor, without touching the SDK.
 */
final class BearerTokenChannelProvider extends ManagedChannelProvider {
    private static final Metadata.Key<String> AUTHORIZATION =
            Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);

    private final String token;

    private BearerTokenChannelProvider(String token) {
        this.token = token;
    }

    /** Registers the provider when {@code token} is not blank; returns whether it did. */
    static boolean install(String token) {
        if (token == null || token.isBlank()) {
            return false;
        }
        ManagedChannelRegistry.getDefaultRegistry().register(new BearerTokenChannelProvider(token.strip()));
        return true;
    }

    @Override
    protected boolean isAvailable() {
        return true;
    }

    @Override
    protected int priority() {
        return 10;
    }

    @Override
    protected ManagedChannelBuilder<?> builderForAddress(String name, int port) {
        return NettyChannelBuilder.forAddress(name, port).intercept(interceptor());
    }

    @Override
    protected ManagedChannelBuilder<?> builderForTarget(String target) {
        return NettyChannelBuilder.forTarget(target).intercept(interceptor());
    }

    private ClientInterceptor interceptor() {
        Metadata headers = new Metadata();
        headers.put(AUTHORIZATION, "Bearer " + token);
        return MetadataUtils.newAttachHeadersInterceptor(headers);
    }
}
