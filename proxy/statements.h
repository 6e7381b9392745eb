// Named prepared statements, virtualised across server connections.
//
// A client's named statement lives in pgmux, not on one server: each
// distinct (query text, parameter types) becomes one Statement with one
// server-side name, "pgmux_<id>", shared by every client of the pool that
// prepares the same text under any name. Each server remembers which
// statements it has prepared, least recently used first, up to
// max_prepared_statements; when a client binds a statement its server lacks,
// pgmux prepares it there first, in the same write.
//
// Ownership: the StatementRegistry (one per pool) owns every Statement.
// Each client name and each server's entry holds one reference; a
// statement nobody references is forgotten.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>

#include "protocol/frame.h"

namespace pgmux::proxy {

struct Statement {
  uint64_t id = 0;
  std::string server_name;  // "pgmux_<id>"
  std::string query;
  uint16_t param_count = 0;
  std::string param_types;  // param_count big-endian OIDs, as the client sent them.
  uint32_t refs = 0;
  const std::string* key = nullptr;  // Its key in the registry.
  // A server has accepted it once: its text is valid SQL, so a client that
  // prepares it again can be answered without a server.
  bool valid = false;
};

// Hashing for heterogeneous lookup by string_view.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

class StatementRegistry {
 public:
  StatementRegistry() = default;
  StatementRegistry(const StatementRegistry&) = delete;
  StatementRegistry& operator=(const StatementRegistry&) = delete;

  // The statement for this text and these parameter types, with one more
  // reference (created with refs 1 when new).
  Statement* acquire(std::string_view query, uint16_t param_count, protocol::ByteView param_types);
  // The statement for this text and these types, if any; adds no reference.
  Statement* find(std::string_view query, uint16_t param_count, protocol::ByteView param_types);
  static void add_ref(Statement* statement) { ++statement->refs; }
  // Drops one reference; the statement is forgotten at zero.
  void release(Statement* statement);
  size_t size() const { return by_key_.size(); }

 private:
  std::unordered_map<std::string, Statement, StringHash, std::equal_to<>> by_key_;
  void make_key(std::string_view query, uint16_t param_count, protocol::ByteView param_types);
  std::string key_;  // Scratch for building lookup keys without allocating.
  uint64_t next_id_ = 1;
};

// One client's names. Each name holds a reference.
class ClientStatements {
 public:
  explicit ClientStatements(StatementRegistry& registry) : registry_(&registry) {}
  ~ClientStatements() { clear(); }
  ClientStatements(const ClientStatements&) = delete;
  ClientStatements& operator=(const ClientStatements&) = delete;

  Statement* find(std::string_view name) const;
  // Takes over one reference of `statement`. REQUIRES: name not present.
  void add(std::string_view name, Statement* statement);
  // False if the client has no such name.
  bool remove(std::string_view name);
  // Removes every name bound to `statement` (its Parse failed).
  void forget(const Statement* statement);
  void clear();
  size_t size() const { return names_.size(); }

 private:
  StatementRegistry* registry_;
  std::unordered_map<std::string, Statement*, StringHash, std::equal_to<>> names_;
};

// What one server has prepared, most recently used first. Each entry holds
// a reference.
class ServerStatements {
 public:
  ServerStatements(StatementRegistry& registry, size_t capacity)
      : registry_(&registry), capacity_(capacity) {}
  ~ServerStatements() { clear(); }
  ServerStatements(const ServerStatements&) = delete;
  ServerStatements& operator=(const ServerStatements&) = delete;

  // True if prepared here; marks it most recently used.
  bool touch(const Statement* statement);
  bool contains(const Statement* statement) const { return where_.count(statement) != 0; }
  // Records `statement` as prepared here (adding a reference). If that goes
  // over capacity, returns the least recently used statement, now no longer
  // recorded, whose reference passes to the caller (who closes it on the
  // server and then releases it); else nullptr.
  [[nodiscard]] Statement* insert(Statement* statement);
  // Records `statement` again without evicting anything (a Close that
  // made room was skipped by the server); adds a reference if absent.
  void restore(Statement* statement);
  // Forgets `statement` (its Parse failed or it was deallocated); releases
  // the reference. No-op if absent.
  void erase(Statement* statement);
  void clear();
  size_t size() const { return order_.size(); }
  StatementRegistry& registry() { return *registry_; }

 private:
  StatementRegistry* registry_;
  size_t capacity_;
  std::list<Statement*> order_;  // Front: most recently used.
  std::unordered_map<const Statement*, std::list<Statement*>::iterator> where_;
};

}  // namespace pgmux::proxy
