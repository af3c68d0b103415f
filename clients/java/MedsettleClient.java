import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.time.Duration;
import java.time.Instant;
import java.util.Base64;
import java.util.Locale;
import java.util.Set;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * Signs requests for the medsettle gateway and settles a bill, in plain Java 17 (no libraries).
 *
 * <p>The signature is lower-case hex HMAC-SHA256, keyed with the secret's UTF-8 bytes, over five
 * lines joined by "\n": the method in upper case, the path with its query exactly as sent, the
 * Unix timestamp, a fresh nonce, and the lower-case hex SHA-256 of the body bytes (README,
 * "Signing requests"). A settlement is retried with the very same body bytes, so its request_id
 * is the same and the gateway answers the retry with the first settlement instead of settling
 * twice; each attempt is signed afresh.
 *
 * <pre>
 * javac -d out MedsettleClient.java
 * MEDSETTLE_SECRET=sk_... java -cp out MedsettleClient sign POST /v1/settlements 1795430400 NONCE body.json
 * MEDSETTLE_KEY_ID=k_... MEDSETTLE_SECRET=sk_... java -cp out MedsettleClient settle http://127.0.0.1:8080 bill.json
 * </pre>
 */
public final class MedsettleClient {
    /** Answers that ask for the same request again; any other answer is final. */
    private static final Set<Integer> RETRY_STATUSES = Set.of(429, 502, 503, 504);
    private static final SecureRandom RANDOM = new SecureRandom();

    private final HttpClient http;
    private final String baseUrl;
    private final String keyId;
    private final String secret;
    private final int attempts;

    public MedsettleClient(String baseUrl, String keyId, String secret, int attempts) {
        // HTTP/1.1: the default would offer an h2c upgrade, which the gateway does not speak.
        this.http = HttpClient.newBuilder()
                .version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(Duration.ofSeconds(5))
                .build();
        this.baseUrl = baseUrl.replaceAll("/+$", "");
        this.keyId = keyId;
        this.secret = secret;
        this.attempts = attempts;
    }

    static String hex(byte[] bytes) {
        StringBuilder text = new StringBuilder(bytes.length * 2);
        for (byte b : bytes) {
            text.append(String.format("%02x", b));
        }
        return text.toString();
    }

    /** The string that is signed. */
    public static String canonical(String method, String pathAndQuery, String timestamp, String nonce, byte[] body)
            throws GeneralSecurityException {
        String bodyHash = hex(MessageDigest.getInstance("SHA-256").digest(body));
        return String.join("\n", method.toUpperCase(Locale.ROOT), pathAndQuery, timestamp, nonce, bodyHash);
    }

    /** The X-Signature header's value. */
    public static String sign(String secret, String method, String pathAndQuery, String timestamp, String nonce,
            byte[] body) throws GeneralSecurityException {
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(secret.getBytes(StandardCharsets.UTF_8), "HmacSHA256"));
        byte[] signed = canonical(method, pathAndQuery, timestamp, nonce, body).getBytes(StandardCharsets.UTF_8);
        return hex(mac.doFinal(signed));
    }

    /** 24 characters of A-Z a-z 0-9 _ -, fresh for every request. */
    static String newNonce() {
        byte[] random = new byte[18];
        RANDOM.nextBytes(random);
        return Base64.getUrlEncoder().withoutPadding().encodeToString(random);
    }

    /**
     * Sends one signed request, and again with the same body while the outcome is unknown (a timeout,
     * a dropped connection) or the gateway asks for a retry (429, 502-504), at most {@code attempts} times.
     */
    public HttpResponse<String> send(String method, String pathAndQuery, byte[] body)
            throws IOException, InterruptedException, GeneralSecurityException {
        for (int attempt = 1; ; attempt++) {
            String timestamp = Long.toString(Instant.now().getEpochSecond());
            String nonce = newNonce();
            HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(baseUrl + pathAndQuery))
                    .timeout(Duration.ofSeconds(10))
                    .header("X-Key-Id", keyId)
                    .header("X-Timestamp", timestamp)
                    .header("X-Nonce", nonce)
                    .header("X-Signature", sign(secret, method, pathAndQuery, timestamp, nonce, body));
            if (body.length > 0) {
                request.header("Content-Type", "application/json")
                        .method(method, HttpRequest.BodyPublishers.ofByteArray(body));
            } else {
                request.method(method, HttpRequest.BodyPublishers.noBody());
            }
            long waitMillis = 200L << Math.min(attempt - 1, 6);
            try {
                HttpResponse<String> response = http.send(request.build(), HttpResponse.BodyHandlers.ofString());
                if (!RETRY_STATUSES.contains(response.statusCode()) || attempt >= attempts) {
                    return response;
                }
                String retryAfter = response.headers().firstValue("Retry-After").orElse("0");
                waitMillis = Math.max(waitMillis, Long.parseLong(retryAfter.trim()) * 1000);
            } catch (IOException error) {
                if (attempt >= attempts) {
                    throw error;
                }
            }
            Thread.sleep(waitMillis + RANDOM.nextInt((int) (waitMillis / 2) + 1));
        }
    }

    /** Settles a bill (JSON bytes): 201 when settled, 200 with "replayed": true for a bill already settled. */
    public HttpResponse<String> settle(byte[] bill) throws IOException, InterruptedException, GeneralSecurityException {
        return send("POST", "/v1/settlements", bill);
    }

    private static String environment(String name) {
        String value = System.getenv(name);
        if (value == null || value.isEmpty()) {
            throw new IllegalArgumentException(name + " is not set");
        }
        return value;
    }

    public static void main(String[] args) throws Exception {
        // The secret comes from the environment, never the command line, where other users could read it.
        if (args.length == 6 && args[0].equals("sign")) {
            byte[] body = Files.readAllBytes(Path.of(args[5]));
            System.out.println(sign(environment("MEDSETTLE_SECRET"), args[1], args[2], args[3], args[4], body));
        } else if (args.length == 3 && args[0].equals("settle")) {
            MedsettleClient client = new MedsettleClient(
                    args[1], environment("MEDSETTLE_KEY_ID"), environment("MEDSETTLE_SECRET"), 4);
            HttpResponse<String> response = client.settle(Files.readAllBytes(Path.of(args[2])));
            System.err.println("HTTP " + response.statusCode());
            System.out.println(response.body());
            System.exit(response.statusCode() < 300 ? 0 : 1);
        } else {
            System.err.println("usage: MedsettleClient sign METHOD PATH TIMESTAMP NONCE BODY_FILE (MEDSETTLE_SECRET set)");
            System.err.println("       MedsettleClient settle BASE_URL BILL_FILE (MEDSETTLE_KEY_ID, MEDSETTLE_SECRET set)");
            System.exit(2);
        }
    }
}
