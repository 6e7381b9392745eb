#include "proxy/statements.h"

#include <cassert>

namespace pgmux::proxy {

void StatementRegistry::make_key(std::string_view query, uint16_t param_count,
                                 protocol::ByteView param_types) {
  // The key: parameter count and types, then the text. Two Parses with the
  // same text but different declared types are different statements.
  key_.clear();
  key_.push_back(static_cast<char>(param_count >> 8));
  key_.push_back(static_cast<char>(param_count & 0xff));
  key_.append(reinterpret_cast<const char*>(param_types.data()), param_types.size());
  key_.append(query);
}

Statement* StatementRegistry::find(std::string_view query, uint16_t param_count,
                                   protocol::ByteView param_types) {
  make_key(query, param_count, param_types);
  auto found = by_key_.find(std::string_view(key_));
  return found == by_key_.end() ? nullptr : &found->second;
}

Statement* StatementRegistry::acquire(std::string_view query, uint16_t param_count,
                                      protocol::ByteView param_types) {
  make_key(query, param_count, param_types);
  auto found = by_key_.find(std::string_view(key_));
  if (found != by_key_.end()) {
    ++found->second.refs;
    return &found->second;
  }
  auto [it, inserted] = by_key_.try_emplace(key_);
  assert(inserted);
  Statement& statement = it->second;
  statement.id = next_id_++;
  statement.server_name = "pgmux_" + std::to_string(statement.id);
  statement.query = std::string(query);
  statement.param_count = param_count;
  statement.param_types.assign(reinterpret_cast<const char*>(param_types.data()),
                               param_types.size());
  statement.refs = 1;
  statement.key = &it->first;
  return &statement;
}

void StatementRegistry::release(Statement* statement) {
  assert(statement->refs > 0);
  if (--statement->refs == 0) by_key_.erase(*statement->key);
}

Statement* ClientStatements::find(std::string_view name) const {
  auto found = names_.find(name);
  return found == names_.end() ? nullptr : found->second;
}

void ClientStatements::add(std::string_view name, Statement* statement) {
  const bool inserted = names_.try_emplace(std::string(name), statement).second;
  assert(inserted);
  (void)inserted;
}

bool ClientStatements::remove(std::string_view name) {
  auto found = names_.find(name);
  if (found == names_.end()) return false;
  Statement* statement = found->second;
  names_.erase(found);
  registry_->release(statement);
  return true;
}

void ClientStatements::forget(const Statement* statement) {
  for (auto it = names_.begin(); it != names_.end();) {
    if (it->second == statement) {
      Statement* s = it->second;
      it = names_.erase(it);
      registry_->release(s);
    } else {
      ++it;
    }
  }
}

void ClientStatements::clear() {
  for (auto& [name, statement] : names_) registry_->release(statement);
  names_.clear();
}

bool ServerStatements::touch(const Statement* statement) {
  auto found = where_.find(statement);
  if (found == where_.end()) return false;
  order_.splice(order_.begin(), order_, found->second);
  return true;
}

Statement* ServerStatements::insert(Statement* statement) {
  if (touch(statement)) return nullptr;
  StatementRegistry::add_ref(statement);
  order_.push_front(statement);
  where_.emplace(statement, order_.begin());
  if (order_.size() <= capacity_) return nullptr;
  Statement* evicted = order_.back();
  order_.pop_back();
  where_.erase(evicted);
  return evicted;
}

void ServerStatements::restore(Statement* statement) {
  if (contains(statement)) return;
  StatementRegistry::add_ref(statement);
  order_.push_front(statement);
  where_.emplace(statement, order_.begin());
}

void ServerStatements::erase(Statement* statement) {
  auto found = where_.find(statement);
  if (found == where_.end()) return;
  order_.erase(found->second);
  where_.erase(found);
  registry_->release(statement);
}

void ServerStatements::clear() {
  for (Statement* statement : order_) registry_->release(statement);
  order_.clear();
  where_.clear();
}

}  // namespace pgmux::proxy
