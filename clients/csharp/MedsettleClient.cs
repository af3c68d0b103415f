// Signs requests for the medsettle gateway and settles a bill, in C# with only the base class library.
//
// The signature is lower-case hex HMAC-SHA256, keyed with the secret's UTF-8 bytes, over five lines
// joined by "\n": the method in upper case, the path with its query exactly as sent, the Unix
// timestamp, a fresh nonce, and the lower-case hex SHA-256 of the body bytes (README, "Signing
// requests"). A settlement is retried with the very same body bytes, so its request_id is the same
// and the gateway answers the retry with the first settlement instead of settling twice; each
// attempt is signed afresh.
//
//   dotnet run -- sign POST /v1/settlements 1795430400 NONCE body.json        (MEDSETTLE_SECRET set)
//   dotnet run -- settle http://127.0.0.1:8080 bill.json      (MEDSETTLE_KEY_ID, MEDSETTLE_SECRET set)
//
// Written for .NET 8 in the language of C# 7, so that Mono's compiler (mcs, a Debian package) builds
// it too: `mcs -r:System.Net.Http MedsettleClient.cs && mono MedsettleClient.exe ...`.
using System;
using System.IO;
using System.Linq;
using System.Net.Http;
using System.Security.Cryptography;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

public sealed class MedsettleClient
{
    // Answers that ask for the same request again; any other answer is final.
    private static readonly int[] RetryStatuses = { 429, 502, 503, 504 };
    private static readonly RandomNumberGenerator Random = RandomNumberGenerator.Create();

    private readonly HttpClient http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
    private readonly string baseUrl;
    private readonly string keyId;
    private readonly string secret;
    private readonly int attempts;

    public MedsettleClient(string baseUrl, string keyId, string secret, int attempts)
    {
        this.baseUrl = baseUrl.TrimEnd('/');
        this.keyId = keyId;
        this.secret = secret;
        this.attempts = attempts;
    }

    private static string Hex(byte[] bytes)
    {
        return string.Concat(bytes.Select(b => b.ToString("x2")));
    }

    // The string that is signed.
    public static string Canonical(string method, string pathAndQuery, string timestamp, string nonce, byte[] body)
    {
        using (var sha256 = SHA256.Create())
        {
            var bodyHash = Hex(sha256.ComputeHash(body));
            return string.Join("\n", method.ToUpperInvariant(), pathAndQuery, timestamp, nonce, bodyHash);
        }
    }

    // The X-Signature header's value.
    public static string Sign(string secret, string method, string pathAndQuery, string timestamp, string nonce, byte[] body)
    {
        using (var hmac = new HMACSHA256(Encoding.UTF8.GetBytes(secret)))
        {
            var signed = Encoding.UTF8.GetBytes(Canonical(method, pathAndQuery, timestamp, nonce, body));
            return Hex(hmac.ComputeHash(signed));
        }
    }

    // 24 characters of A-Z a-z 0-9 _ -, fresh for every request.
    private static string NewNonce()
    {
        var bytes = new byte[18];
        Random.GetBytes(bytes);
        return Convert.ToBase64String(bytes).Replace('+', '-').Replace('/', '_');
    }

    // Sends one signed request, and again with the same body while the outcome is unknown (a timeout, a
    // dropped connection) or the gateway asks for a retry (429, 502-504), at most `attempts` times.
    public async Task<Tuple<int, string>> Send(string method, string pathAndQuery, byte[] body)
    {
        for (var attempt = 1; ; attempt++)
        {
            var timestamp = DateTimeOffset.UtcNow.ToUnixTimeSeconds().ToString();
            var nonce = NewNonce();
            var request = new HttpRequestMessage(new HttpMethod(method), baseUrl + pathAndQuery);
            request.Headers.Add("X-Key-Id", keyId);
            request.Headers.Add("X-Timestamp", timestamp);
            request.Headers.Add("X-Nonce", nonce);
            request.Headers.Add("X-Signature", Sign(secret, method, pathAndQuery, timestamp, nonce, body));
            if (body.Length > 0)
            {
                request.Content = new ByteArrayContent(body);
                request.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
            }
            var wait = TimeSpan.FromMilliseconds(200 << Math.Min(attempt - 1, 6));
            try
            {
                using (var response = await http.SendAsync(request))
                {
                    var status = (int)response.StatusCode;
                    var text = await response.Content.ReadAsStringAsync();
                    if (!RetryStatuses.Contains(status) || attempt >= attempts)
                    {
                        return Tuple.Create(status, text);
                    }
                    var retryAfter = response.Headers.RetryAfter;
                    if (retryAfter != null && retryAfter.Delta.HasValue && retryAfter.Delta.Value > wait)
                    {
                        wait = retryAfter.Delta.Value;
                    }
                }
            }
            catch (Exception error) when (error is HttpRequestException || error is TaskCanceledException)
            {
                if (attempt >= attempts)
                {
                    throw;
                }
            }
            await Task.Delay(wait);
        }
    }

    // Settles a bill (JSON bytes): 201 when settled, 200 with "replayed": true for a bill already settled.
    public Task<Tuple<int, string>> Settle(byte[] bill)
    {
        return Send("POST", "/v1/settlements", bill);
    }

    private static string Environment(string name)
    {
        var value = System.Environment.GetEnvironmentVariable(name);
        if (string.IsNullOrEmpty(value))
        {
            throw new ArgumentException(name + " is not set");
        }
        return value;
    }

    public static int Main(string[] args)
    {
        // The secret comes from the environment, never the command line, where other users could read it.
        if (args.Length == 6 && args[0] == "sign")
        {
            var body = File.ReadAllBytes(args[5]);
            Console.WriteLine(Sign(Environment("MEDSETTLE_SECRET"), args[1], args[2], args[3], args[4], body));
            return 0;
        }
        if (args.Length == 3 && args[0] == "settle")
        {
            var client = new MedsettleClient(args[1], Environment("MEDSETTLE_KEY_ID"), Environment("MEDSETTLE_SECRET"), 4);
            var answer = client.Settle(File.ReadAllBytes(args[2])).GetAwaiter().GetResult();
            Console.Error.WriteLine("HTTP " + answer.Item1);
            Console.WriteLine(answer.Item2);
            return answer.Item1 < 300 ? 0 : 1;
        }
        Console.Error.WriteLine("usage: MedsettleClient sign METHOD PATH TIMESTAMP NONCE BODY_FILE (MEDSETTLE_SECRET set)");
        Console.Error.WriteLine("       MedsettleClient settle BASE_URL BILL_FILE (MEDSETTLE_KEY_ID, MEDSETTLE_SECRET set)");
        return 2;
    }
}
