// Aliases: CreateAlias, UpdateAlias, DeleteAlias, ListAliases. An alias points at a key id
// (never at another alias) and dies with its key.
#include <cctype>

#include "kms_ops.h"

namespace kmsfs::kms_local {
namespace {

bool alias_chars_ok(const std::string& name) {
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == ':' || c == '/' || c == '_' ||
          c == '-')) {
      return false;
    }
  }
  return true;
}

ApiResult<std::string> alias_name(const RequestFields& f) {
  auto name = f.string("AliasName", 1, 256);
  if (!name.ok()) return name;
  if (!alias_chars_ok(name.value())) {
    return validation_error("aliasName",
                            "Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$");
  }
  if (!name.value().starts_with("alias/") || name.value().size() == 6) {
    return kms_errors::validation("Alias must start with the prefix \"alias/\".");
  }
  return name;
}

// The key an alias may point at: named by key id or key ARN, not pending deletion.
ApiResult<Key*> target_key(OpContext& ctx, const RequestFields& f) {
  auto key = key_from_member(ctx, f, "TargetKeyId", /*allow_alias=*/false);
  if (!key.ok()) return key;
  if (auto e = check_not_pending_deletion(ctx.store, *key.value())) return *e;
  return key;
}

}  // namespace

ApiResult<json> op_create_alias(OpContext& ctx, const RequestFields& f) {
  auto name = alias_name(f);
  if (!name.ok()) return name.error();
  if (name.value().starts_with("alias/aws/")) {
    return kms_errors::invalid_alias_name("Cannot create alias with prefix 'alias/aws/'");
  }
  auto key = target_key(ctx, f);
  if (!key.ok()) return key.error();
  auto& aliases = ctx.store.aliases();
  if (aliases.count(name.value())) {
    return kms_errors::already_exists("An alias with the name " +
                                      ctx.store.alias_arn(name.value()) + " already exists");
  }
  aliases[name.value()] = Alias{name.value(), key.value()->id, ctx.now, ctx.now};
  ctx.changed = true;
  return json::object();
}

ApiResult<json> op_update_alias(OpContext& ctx, const RequestFields& f) {
  auto name = alias_name(f);
  if (!name.ok()) return name.error();
  auto it = ctx.store.aliases().find(name.value());
  if (it == ctx.store.aliases().end()) {
    return kms_errors::not_found("Alias " + ctx.store.alias_arn(name.value()) + " is not found.");
  }
  auto key = target_key(ctx, f);
  if (!key.ok()) return key.error();
  it->second.target_key_id = key.value()->id;
  it->second.updated = ctx.now;
  ctx.changed = true;
  return json::object();
}

ApiResult<json> op_delete_alias(OpContext& ctx, const RequestFields& f) {
  auto name = alias_name(f);
  if (!name.ok()) return name.error();
  if (ctx.store.aliases().erase(name.value()) == 0) {
    return kms_errors::not_found("Alias " + ctx.store.alias_arn(name.value()) + " is not found.");
  }
  ctx.changed = true;
  return json::object();
}

ApiResult<json> op_list_aliases(OpContext& ctx, const RequestFields& f) {
  std::optional<std::string> only_key;
  if (f.has("KeyId")) {
    auto key = key_from_member(ctx, f, "KeyId", /*allow_alias=*/false);
    if (!key.ok()) return key.error();
    only_key = key.value()->id;
  }
  std::vector<std::pair<std::string, json>> items;
  for (const auto& [name, a] : ctx.store.aliases()) {
    if (only_key && a.target_key_id != *only_key) continue;
    items.emplace_back(name, json{{"AliasName", a.name},
                                  {"AliasArn", ctx.store.alias_arn(a.name)},
                                  {"TargetKeyId", a.target_key_id},
                                  {"CreationDate", a.created},
                                  {"LastUpdatedDate", a.updated}});
  }
  return paginate(f, std::move(items), "Aliases", 50, 100);
}

}  // namespace kmsfs::kms_local
