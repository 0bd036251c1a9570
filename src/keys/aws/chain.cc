// The default credential chain and the profile resolution it needs (static keys,
// credential_process, AssumeRole with source_profile / credential_source, web identity).
#include <mutex>
#include <vector>

#include "keys/aws/credentials.h"

namespace kmsfs::aws {
namespace {

constexpr int kMaxProfileDepth = 5;  // source_profile chains; also stops cycles

std::string session_name(const std::map<std::string, std::string>& s, const Env& env) {
  if (auto it = s.find("role_session_name"); it != s.end() && !it->second.empty()) return it->second;
  if (auto n = env.get("AWS_ROLE_SESSION_NAME")) return *n;
  return "kmsfs-" + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count());
}

struct ProfileResolver {
  const Env& env;
  HttpTransport& http;
  std::string region;

  Result<Credentials> resolve(const std::string& profile, int depth) {
    if (depth > kMaxProfileDepth) {
      return Status(Code::kInvalidArgument, "AWS profile '" + profile + "': source_profile chain too long (a cycle?)");
    }
    ProfileFiles files = ProfileFiles::load(env);
    ASSIGN_OR_RETURN(auto s, profile_settings(files, profile));
    auto get = [&](const char* k) -> std::string {
      auto it = s.find(k);
      return it == s.end() ? std::string() : it->second;
    };
    auto where = [&](const std::string& what) { return "AWS profile '" + profile + "': " + what; };
    std::string sts_region = get("region").empty() ? region : get("region");

    if (std::string role = get("role_arn"); !role.empty()) {
      StsOptions so = sts_options(env, sts_region);
      if (std::string tf = get("web_identity_token_file"); !tf.empty()) {
        return sts_assume_role_with_web_identity(http, so, role, session_name(s, env), tf);
      }
      Result<Credentials> source = Status(Code::kInternal, "");
      std::string src_profile = get("source_profile"), src = get("credential_source");
      if (!src_profile.empty() && !src.empty()) {
        return Status(Code::kInvalidArgument, where("both source_profile and credential_source"));
      }
      if (src_profile == profile) {
        source = static_keys(s, profile);
      } else if (!src_profile.empty()) {
        source = resolve(src_profile, depth + 1);
      } else if (src == "Environment") {
        source = credentials_from_env(env);
      } else if (src == "Ec2InstanceMetadata") {
        source = credentials_from_imds(env, http);
      } else if (src == "EcsContainer") {
        source = credentials_from_container(env, http);
      } else {
        return Status(Code::kInvalidArgument,
                      where("role_arn needs source_profile or credential_source "
                            "(Environment, Ec2InstanceMetadata, EcsContainer)"));
      }
      if (!source.ok()) return source.status().with_context(where("source credentials"));
      return sts_assume_role(http, so, *source, role, session_name(s, env), get("external_id"));
    }
    if (!get("aws_access_key_id").empty()) return static_keys(s, profile);
    if (std::string cmd = get("credential_process"); !cmd.empty()) {
      Result<Credentials> c = run_credential_process(cmd);
      if (!c.ok()) return c.status().with_context(where(""));
      return c;
    }
    if (!get("sso_session").empty() || !get("sso_start_url").empty()) {
      // IAM Identity Center needs a token cache and a browser login: not built in. The
      // chain goes on, and the error says why this profile gave nothing.
      return Status(Code::kNotFound, where("SSO (sso_session, sso_start_url) is not supported; use "
                                           "credential_process = aws configure export-credentials --profile " +
                                           profile + " --format process"));
    }
    return Status(Code::kNotFound,
                  where("no aws_access_key_id, role_arn, web_identity_token_file or credential_process in it"));
  }

  static Result<Credentials> static_keys(const std::map<std::string, std::string>& s,
                                         const std::string& profile) {
    auto id = s.find("aws_access_key_id");
    auto secret = s.find("aws_secret_access_key");
    if (id == s.end() || secret == s.end() || id->second.empty() || secret->second.empty()) {
      return Status(Code::kInvalidArgument, "AWS profile '" + profile +
                                                "': aws_access_key_id and aws_secret_access_key "
                                                "must be set together");
    }
    auto token = s.find("aws_session_token");
    return Credentials::make(id->second, secret->second, token == s.end() ? "" : token->second);
  }
};

class ChainProvider final : public CredentialsProvider {
 public:
  explicit ChainProvider(std::vector<std::shared_ptr<CredentialsProvider>> sources)
      : sources_(std::move(sources)) {}

  std::string name() const override {
    std::lock_guard g(mu_);
    return chosen_ ? chosen_->name() : "default chain";
  }

  Result<std::shared_ptr<const Credentials>> get() override {
    std::shared_ptr<CredentialsProvider> chosen;
    {
      std::lock_guard g(mu_);
      chosen = chosen_;
    }
    if (chosen) return chosen->get();
    std::string tried;
    for (const auto& src : sources_) {
      Result<std::shared_ptr<const Credentials>> r = src->get();
      if (r.ok()) {
        std::lock_guard g(mu_);
        if (!chosen_) chosen_ = src;
        return r;
      }
      if (r.status().code() != Code::kNotFound) {
        return r.status().with_context("AWS credentials from " + src->name());
      }
      tried += (tried.empty() ? "" : "; ") + src->name() + " (" + r.status().message() + ")";
    }
    // One line, every source in the order tried: whoever reads it in a journal sees why
    // each of them gave nothing (docs/KMS.md "Credentials").
    return Status(Code::kPermissionDenied, "no AWS credentials found; tried " + tried);
  }

 private:
  const std::vector<std::shared_ptr<CredentialsProvider>> sources_;
  mutable std::mutex mu_;
  std::shared_ptr<CredentialsProvider> chosen_;
};

}  // namespace

std::shared_ptr<CredentialsProvider> make_default_chain(ChainOptions o) {
  auto env = std::make_shared<const Env>(std::move(o.env));
  std::shared_ptr<HttpTransport> http = o.http;
  std::string profile = o.profile.empty() ? profile_name(*env) : o.profile;
  bool explicit_profile = !o.profile.empty() || env->get("AWS_PROFILE") || env->get("AWS_DEFAULT_PROFILE");
  std::string region = o.region;
  std::vector<std::shared_ptr<CredentialsProvider>> sources;

  sources.push_back(make_caching_provider(
      "environment", [env] { return credentials_from_env(*env); }, o.cache));
  sources.push_back(make_caching_provider(
      "profile " + profile,
      [env, http, profile, region, explicit_profile]() -> Result<Credentials> {
        // A profile the user named must exist; the implicit "default" may be absent.
        if (explicit_profile && !profile_settings(ProfileFiles::load(*env), profile).ok()) {
          return Status(Code::kInvalidArgument, "AWS profile '" + profile +
                                                    "' not found in the AWS config or credentials file");
        }
        ProfileResolver r{*env, *http, region};
        return r.resolve(profile, 0);
      },
      o.cache));
  sources.push_back(make_caching_provider(
      "web identity",
      [env, http, region]() -> Result<Credentials> {
        auto file = env->get("AWS_WEB_IDENTITY_TOKEN_FILE");
        auto role = env->get("AWS_ROLE_ARN");
        if (!file || !role) return Status(Code::kNotFound, "no AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN");
        return sts_assume_role_with_web_identity(*http, sts_options(*env, region), *role,
                                                 session_name({}, *env), *file);
      },
      o.cache));
  sources.push_back(make_caching_provider(
      "container credentials", [env, http] { return credentials_from_container(*env, *http); },
      o.cache));
  sources.push_back(make_caching_provider(
      "IMDS", [env, http] { return credentials_from_imds(*env, *http); }, o.cache));
  return std::make_shared<ChainProvider>(std::move(sources));
}

}  // namespace kmsfs::aws
