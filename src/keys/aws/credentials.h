// Where AWS credentials come from: the standard chain of the AWS SDKs (docs/KMS.md
// "Credentials"), and the cache that refreshes temporary credentials before they expire.
// Secrets never reach a log line or an error message.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "keys/aws/http.h"
#include "keys/aws/sigv4.h"
#include "keys/aws/wiped.h"

namespace kmsfs::aws {

using Clock = std::function<std::chrono::system_clock::time_point()>;

// A snapshot of the environment, so that every lookup is testable without setenv.
struct Env {
  std::map<std::string, std::string, std::less<>> vars;
  static Env process();  // the variables of this process
  // Unset and empty are the same (as in the SDKs).
  std::optional<std::string> get(std::string_view name) const;
  std::string home() const;  // $HOME
};

class CredentialsProvider {
 public:
  virtual ~CredentialsProvider() = default;
  // kNotFound: this source is not configured (the chain moves on). Any other error stops the
  // chain: a source that is configured but failing must not be silently skipped.
  virtual Result<std::shared_ptr<const Credentials>> get() = 0;
  virtual std::string name() const = 0;  // "environment", "profile dev", "IMDS" ...
};

// The source's own answer, with the time it expires (if it does).
using Fetch = std::function<Result<Credentials>()>;

// Caches what `fetch` returns. Temporary credentials are refreshed by a background thread
// `refresh_ahead` before they expire, so callers keep using the old ones meanwhile; a
// caller blocks only when there are none or they have expired. A failed refresh is retried
// (every `retry_every`) until the old credentials expire.
struct CacheOptions {
  std::chrono::seconds refresh_ahead{300};
  std::chrono::seconds retry_every{10};
  Clock clock;  // default: system_clock::now
};
std::shared_ptr<CredentialsProvider> make_caching_provider(std::string name, Fetch fetch,
                                                           CacheOptions opts = {});

// --- Sources (each returns kNotFound when it is not configured). ---

// AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY [+ AWS_SESSION_TOKEN].
Result<Credentials> credentials_from_env(const Env& env);

// An INI file as the AWS CLI writes it: section -> key -> value (keys lowercased, values
// trimmed; comments with '#' or ';' at line start). Indented "KEY = VALUE" lines under a
// key with an empty value are its sub-settings, stored as "PARENT.KEY" ("kms.endpoint_url"
// in a [services NAME] section).
using IniFile = std::map<std::string, std::map<std::string, std::string>>;
IniFile parse_ini(std::string_view text);

// The merged settings of one profile: ~/.aws/config's "[profile NAME]" (or "[default]")
// overlaid by ~/.aws/credentials' "[NAME]". kNotFound if neither file has the profile.
struct ProfileFiles {
  IniFile config;       // AWS_CONFIG_FILE, default ~/.aws/config
  IniFile credentials;  // AWS_SHARED_CREDENTIALS_FILE, default ~/.aws/credentials
  std::string config_path, credentials_path;  // where they were read from (for messages)
  static ProfileFiles load(const Env& env);
  ProfileFiles() = default;
  ProfileFiles(ProfileFiles&&) = default;
  ProfileFiles& operator=(ProfileFiles&&) = default;
  ~ProfileFiles();  // wipes the values: the credentials file holds secret keys
};
Result<std::map<std::string, std::string>> profile_settings(const ProfileFiles& files,
                                                            const std::string& profile);
std::string profile_name(const Env& env);  // AWS_PROFILE, else "default"

// credential_process: runs the command (via /bin/sh -c, as the SDKs do) and parses its
// JSON ("Version": 1, AccessKeyId, SecretAccessKey, SessionToken, Expiration).
Result<Credentials> run_credential_process(const std::string& command);
Result<Credentials> parse_credential_process_output(WipedString& json);

// ECS/EKS container credentials and EC2 instance metadata (IMDSv2).
Result<Credentials> credentials_from_container(const Env& env, HttpTransport& http);
Result<Credentials> credentials_from_imds(const Env& env, HttpTransport& http);
// The JSON both return (AccessKeyId, SecretAccessKey, Token, Expiration).
Result<Credentials> parse_metadata_credentials(WipedString& json, std::string_view source);

// STS (query protocol, XML answers).
struct StsOptions {
  std::string region;    // signing region and regional endpoint; empty: us-east-1 global
  std::string endpoint;  // AWS_ENDPOINT_URL_STS / AWS_ENDPOINT_URL override
  Clock clock;
};
StsOptions sts_options(const Env& env, std::string region);
Result<Credentials> sts_assume_role(HttpTransport& http, const StsOptions& o,
                                    const Credentials& source, const std::string& role_arn,
                                    const std::string& session_name,
                                    const std::string& external_id = {});
Result<Credentials> sts_assume_role_with_web_identity(HttpTransport& http, const StsOptions& o,
                                                      const std::string& role_arn,
                                                      const std::string& session_name,
                                                      const std::string& token_file);
Result<Credentials> parse_sts_credentials(WipedString& xml, std::string_view action);

// "2024-01-02T03:04:05Z", with optional fractional seconds and "+00:00".
Result<std::chrono::system_clock::time_point> parse_iso8601(std::string_view s);

// The default chain, in SDK order: environment; the profile (AWS_PROFILE or "default":
// role_arn + source_profile/credential_source via STS AssumeRole, web_identity_token_file,
// static keys, credential_process); web identity from AWS_WEB_IDENTITY_TOKEN_FILE +
// AWS_ROLE_ARN; container credentials; IMDSv2. The first configured source wins and is
// kept (with its cache) for the life of the chain.
struct ChainOptions {
  Env env;
  std::shared_ptr<HttpTransport> http;
  std::string profile;  // overrides AWS_PROFILE
  std::string region;   // for STS
  CacheOptions cache;
};
std::shared_ptr<CredentialsProvider> make_default_chain(ChainOptions o);

// A fixed set of credentials (tests, or a caller that already has them).
std::shared_ptr<CredentialsProvider> make_static_provider(Credentials c);

}  // namespace kmsfs::aws
