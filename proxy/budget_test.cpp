// Sharing an upstream's budget: the survey's answer, the adaptive limit, and
// what a pool does on a contended budget. The last case runs two pools (two
// pgmux instances) against one simulated capped upstream.
#include "proxy/budget.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "proxy/pool.h"
#include "proxy/pool_test_fakes.h"

namespace pgmux::proxy {
namespace {

using namespace std::chrono_literals;
using namespace pool_fakes;
using Row = std::vector<std::optional<std::string_view>>;

void refuse(FakeServer* server) {
  server->fail_login(LoginFailure::kNoCapacity, "53300", "too many connections for role \"app\"");
}

// `n` servers logged in, idle.
void open_idle(FakeHost& host, int n) {
  Pool& pool = host.pool();
  for (int i = 0; i < n; ++i) host.open_server(pool);
  for (FakeServer* s : host.live()) {
    if (s->pool_list == PoolList::kOpening) s->log_in(host.now_);
  }
}

TEST_CASE("the survey's row: four integers, and when it says the budget is contended") {
  auto survey = parse_budget_survey(Row{"15", "15", "20", "97"});
  REQUIRE(survey.has_value());
  CHECK(survey->role_connections == 15);
  CHECK(survey->role_limit == 15);
  CHECK(survey->contended(5));         // Full, and 10 are someone else's.
  CHECK_FALSE(survey->contended(15));  // Full, but all of it is this pgmux.
  // A role's budget counts as full from 80 %.
  CHECK(parse_budget_survey(Row{"12", "15", "20", "97"})->contended(4));
  CHECK_FALSE(parse_budget_survey(Row{"11", "15", "20", "97"})->contended(4));
  CHECK(parse_budget_survey(Row{"12", "15", "20", "97"})->budget() == 15);
  CHECK(parse_budget_survey(Row{"3", "-1", "20", "97"})->budget() == 97);
  // No role limit: the server's max_connections is the budget.
  CHECK(parse_budget_survey(Row{"3", "-1", "97", "97"})->contended(3));
  CHECK_FALSE(parse_budget_survey(Row{"3", "-1", "96", "97"})->contended(3));

  CHECK_FALSE(parse_budget_survey(Row{"1", "2", "3"}).has_value());
  CHECK_FALSE(parse_budget_survey(Row{"1", "2", "3", std::nullopt}).has_value());
  CHECK_FALSE(parse_budget_survey(Row{"1", "2", "3", "x"}).has_value());
  CHECK_FALSE(parse_budget_survey(Row{"1", "2", "3", "4 "}).has_value());
  CHECK_FALSE(parse_budget_survey(Row{"1", "2", "3", ""}).has_value());
}

TEST_CASE("a refusal while holding servers lowers the limit; the rest close as released") {
  FakeHost host;
  host.config_.max_server_connections = 10;
  host.config_.query_wait_timeout = 1h;
  warm_up(host);
  Pool& pool = host.pool();
  Upstream& up = host.upstream();
  open_idle(host, 7);  // 8 held.
  std::vector<FakeClient> clients(20);
  for (FakeClient& c : clients) pool.acquire(&c);
  REQUIRE(pool.active_count() == 8);
  REQUIRE(pool.opening_count() == 2);  // Up to max_server_connections.

  std::vector<FakeServer*> opening;
  for (FakeServer* s : host.live()) {
    if (s->pool_list == PoolList::kOpening) opening.push_back(s);
  }
  refuse(opening[0]);
  CHECK(up.limit() == 6);  // 3/4 of the 8 held.
  CHECK(up.refusals() == 1);
  CHECK(up.decreases() == 1);
  CHECK(up.contended(host.now_));
  CHECK(up.failures() == 0);  // Not an outage: no backoff.
  refuse(opening[1]);         // Within the gap: no second decrease.
  CHECK(up.limit() == 6);
  CHECK(up.decreases() == 1);
  for (const FakeClient& c : clients) CHECK(c.error_code.empty());

  // Released servers above the limit close; the waiting clients wait on.
  pool.release(clients[0].server);
  pool.release(clients[1].server);
  CHECK(pool.active_count() == 6);
  int above_share = 0;
  for (const auto& s : host.servers) {
    if (s->close_reason == "above pgmux's share of a full upstream budget") ++above_share;
  }
  CHECK(above_share == 2);
  pool.release(clients[2].server);  // At the limit: handed to the next waiter.
  CHECK(pool.active_count() == 6);
  CHECK(pool.waiting_count() == 20 - 3 - 6);

  // No rise within 400 ms of the refusal; then +1 every 50 ms while
  // clients wait, each rise opening one server.
  host.now_ += Upstream::kRaiseAfterRefusalMs - 1;
  pool.tick(host.now_);
  CHECK(up.limit() == 6);
  CHECK(pool.opening_count() == 0);
  host.now_ += 1;
  pool.tick(host.now_);
  CHECK(up.limit() == 7);
  CHECK(pool.opening_count() == 1);
  host.now_ += Upstream::kRaiseEveryMs - 1;
  pool.tick(host.now_);
  CHECK(up.limit() == 7);
  host.now_ += 1;
  pool.tick(host.now_);
  CHECK(up.limit() == 8);
  CHECK(pool.opening_count() == 2);
  // Never above max_server_connections.
  for (int i = 0; i < 10; ++i) {
    host.now_ += Upstream::kRaiseEveryMs;
    pool.tick(host.now_);
  }
  CHECK(up.limit() == 10);
  CHECK(up.open() == 10);
}

TEST_CASE("a refusal with nothing held backs off for at most 2 s and starts again from one") {
  FakeHost host;
  host.config_.max_server_connections = 5;
  host.config_.query_wait_timeout = 1h;
  warm_up(host);
  Pool& pool = host.pool();
  Upstream& up = host.upstream();
  host.live().front()->close("test");
  std::vector<FakeClient> clients(3);
  for (FakeClient& c : clients) pool.acquire(&c);
  for (int round = 0; round < 6; ++round) {
    std::vector<FakeServer*> opening;
    for (FakeServer* s : host.live()) opening.push_back(s);
    REQUIRE_FALSE(opening.empty());
    for (FakeServer* s : opening) refuse(s);
    CHECK(up.retry_at() - host.now_ <= Upstream::kRefusedRetryMaxMs * 5 / 4);  // With jitter.
    host.now_ = up.retry_at();
    pool.tick(host.now_);
    CHECK(pool.opening_count() == 1);  // One login at a time.
  }
  CHECK(up.limit() == 1);
  // The last refusal was more than 400 ms ago: the limit may rise by one
  // at the login, then by one per 50 ms while clients wait.
  host.live().back()->log_in(host.now_);
  CHECK(clients[0].server != nullptr);
  CHECK(up.limit() == 2);
  CHECK(pool.opening_count() == 1);
  host.now_ += Upstream::kRaiseEveryMs - 1;
  pool.tick(host.now_);
  CHECK(pool.opening_count() == 1);
  host.now_ += 1;
  pool.tick(host.now_);
  CHECK(up.limit() == 3);
  CHECK(pool.opening_count() == 2);
}

TEST_CASE("budget_sharing off: the cap stays max_server_connections after a refusal") {
  FakeHost host;
  host.config_.budget_sharing = config::BudgetSharing::kOff;
  host.config_.max_server_connections = 6;
  host.config_.query_wait_timeout = 1h;
  warm_up(host);
  Pool& pool = host.pool();
  open_idle(host, 3);
  std::vector<FakeClient> clients(6);
  for (FakeClient& c : clients) pool.acquire(&c);
  REQUIRE(pool.opening_count() == 2);
  for (FakeServer* s : host.live()) {
    if (s->pool_list == PoolList::kOpening) refuse(s);
  }
  CHECK(host.upstream().limit() == 6);
  CHECK_FALSE(host.upstream().contended(host.now_));
  CHECK(host.upstream().failures() == 2);
}

TEST_CASE("contended: no warming, idle servers above one go after 500 ms, then one kept warm") {
  FakeHost host;
  host.config_.max_server_connections = 10;
  host.config_.min_server_connections = 4;
  Pool& pool = host.pool();
  pool.tick(host.now_);
  REQUIRE(pool.opening_count() == 4);
  refuse(host.servers[0].get());  // The warm-up was refused: warming stops.
  for (FakeServer* s : host.live()) s->log_in(host.now_);
  CHECK(pool.idle_count() == 3);
  CHECK(host.upstream().contended(host.now_));
  pool.tick(host.now_);
  CHECK(pool.opening_count() == 0);

  host.now_ += Upstream::kIdleLeaseMs - 1;
  pool.tick(host.now_);
  CHECK(pool.idle_count() == 3);
  host.now_ += 1;
  pool.tick(host.now_);
  CHECK(pool.idle_count() == 1);  // One kept (a Supavisor pool stays alive).
  for (const auto& s : host.servers) {
    if (s->closed && s.get() != host.servers[0].get()) {
      CHECK(s->close_reason == "idle while the upstream budget is contended");
    }
  }
  // Losing it while contended: nothing warms.
  host.live().front()->close("test");
  pool.tick(host.now_);
  CHECK(pool.opening_count() == 0);
  // Once the contention is over, one warm server, not min_server_connections.
  host.now_ += Upstream::kContendedMs;
  pool.tick(host.now_);
  CHECK_FALSE(host.upstream().contended(host.now_));
  CHECK(host.upstream().shared());
  CHECK(pool.opening_count() == 1);
}

TEST_CASE("the survey: on the coldest idle server, once per interval; a full shared budget") {
  FakeHost host;
  host.config_.max_server_connections = 10;
  host.config_.budget_survey_interval = 1s;
  warm_up(host);
  Pool& pool = host.pool();
  Upstream& up = host.upstream();
  pool.tick(host.now_);
  CHECK(pool.checking_count() == 0);  // One server: nothing it could give back.
  open_idle(host, 3);
  REQUIRE(pool.idle_count() == 4);
  pool.tick(host.now_);
  REQUIRE(pool.checking_count() == 1);
  FakeServer* surveyed = nullptr;
  for (FakeServer* s : host.live()) {
    if (s->checking) surveyed = s;
  }
  REQUIRE(surveyed != nullptr);
  CHECK(surveyed->surveying);
  host.now_ += 500;
  pool.tick(host.now_);
  CHECK(pool.checking_count() == 1);  // One in flight at a time.

  // Not full: nothing changes; the server is back for clients.
  surveyed->answer_survey(host.now_, *parse_budget_survey(Row{"6", "15", "10", "97"}));
  CHECK_FALSE(surveyed->surveying);
  CHECK(pool.idle_count() == 4);
  CHECK_FALSE(up.contended(host.now_));
  host.now_ += 499;
  pool.tick(host.now_);
  CHECK(pool.checking_count() == 0);  // The interval runs from the start.

  host.now_ += 1;
  pool.tick(host.now_);
  REQUIRE(pool.checking_count() == 1);
  for (FakeServer* s : host.live()) {
    if (s->checking) surveyed = s;
  }
  // A client asking meanwhile gets another server.
  FakeClient client;
  pool.acquire(&client);
  CHECK(client.server != nullptr);
  CHECK(client.server != surveyed);
  pool.release(client.server);

  surveyed->answer_survey(host.now_, *parse_budget_survey(Row{"15", "15", "30", "97"}));
  CHECK(up.contended(host.now_));
  CHECK(up.surveys() == 2);
  host.now_ += Upstream::kIdleLeaseMs;
  pool.tick(host.now_);
  // Idle servers go down to min(min_server_connections, 1): 0 here.
  CHECK(pool.idle_count() + pool.checking_count() == 0);
}

TEST_CASE("the survey: a failed one turns surveys off; a lost one frees the slot") {
  FakeHost host;
  host.config_.max_server_connections = 10;
  host.config_.budget_survey_interval = 1s;
  warm_up(host);
  Pool& pool = host.pool();
  open_idle(host, 2);
  pool.tick(host.now_);
  FakeServer* surveyed = nullptr;
  for (FakeServer* s : host.live()) {
    if (s->checking) surveyed = s;
  }
  REQUIRE(surveyed != nullptr);
  surveyed->close("the upstream closed the connection");  // Lost mid-survey.
  host.now_ += 1000;
  pool.tick(host.now_);
  REQUIRE(pool.checking_count() == 1);  // A new one.
  for (FakeServer* s : host.live()) {
    if (s->checking) surveyed = s;
  }
  pool.on_survey_failed(surveyed, "42501 permission denied");
  CHECK(pool.checking_count() == 0);
  CHECK(pool.idle_count() == 2);
  host.now_ += 10'000;
  pool.tick(host.now_);
  CHECK(pool.checking_count() == 0);  // Off for good.
}

// Two pgmux instances against one upstream that admits `budget`
// connections in all. Each instance has `clients` clients that each hold a
// server 50 ms per transaction, back to back. Logins take 5 ms.
struct Instance {
  FakeHost host;
  std::vector<FakeClient> clients;
  std::vector<TimeMs> busy_until;  // Per client: when its transaction ends (0: none).
};

struct Simulation {
  static constexpr TimeMs kStep = 5;
  explicit Simulation(uint32_t cap) : budget(cap) {}

  Instance& add(size_t clients) {
    auto instance = std::make_unique<Instance>();
    instance->host.config_.max_server_connections = 15;
    instance->host.config_.query_wait_timeout = 1h;
    instance->host.config_.budget_survey_interval = 1s;
    instance->host.now_ = now;
    instance->clients.resize(clients);
    instance->busy_until.assign(clients, 0);
    instance->host.pool();
    instances.push_back(std::move(instance));
    return *instances.back();
  }
  uint32_t logged_in() const {
    uint32_t n = 0;
    for (const auto& i : instances) n += i->host.upstream().logged_in();
    return n;
  }
  void step() {
    now += kStep;
    for (auto& i : instances) {
      i->host.now_ = now;
      Pool& pool = i->host.pool();
      // Surveys are answered at once; logins that were started finish now,
      // or are refused when the budget is full.
      for (FakeServer* s : i->host.live()) {
        if (s->surveying) {
          s->answer_survey(now, BudgetSurvey{logged_in(), budget, logged_in(), 100});
          continue;
        }
        if (s->pool_list != PoolList::kOpening) continue;
        if (s->opened_at() + 5 > now) continue;
        if (logged_in() >= budget) {
          refuse(s);
        } else {
          s->log_in(now);
        }
      }
      for (size_t c = 0; c < i->clients.size(); ++c) {
        FakeClient& client = i->clients[c];
        if (client.server != nullptr && i->busy_until[c] != 0 && now >= i->busy_until[c]) {
          i->busy_until[c] = 0;
          pool.release(client.server);
        }
        if (client.server == nullptr && client.pool_list == PoolList::kNone) {
          pool.acquire(&client);
        }
        if (client.server != nullptr && i->busy_until[c] == 0) i->busy_until[c] = now + 50;
      }
      if (now % 100 == 0) pool.tick(now);
    }
    max_seen = std::max(max_seen, logged_in());
  }

  uint32_t budget;
  TimeMs now = 1000;
  uint32_t max_seen = 0;
  std::vector<std::unique_ptr<Instance>> instances;
};

// Steps the simulation for `ms`; returns each instance's mean servers.
std::pair<double, double> run_for(Simulation& sim, Instance& a, Instance& b, TimeMs ms) {
  double sum_a = 0;
  double sum_b = 0;
  const auto steps = static_cast<int>(ms / Simulation::kStep);
  for (int i = 0; i < steps; ++i) {
    sim.step();
    sum_a += a.host.upstream().logged_in();
    sum_b += b.host.upstream().logged_in();
  }
  return {sum_a / steps, sum_b / steps};
}

bool within_20_percent(double held, double share) {
  return held >= share * 0.8 && held <= share * 1.2;
}

TEST_CASE("two instances with waiting clients converge on halves of the budget within 5 s") {
  Simulation sim(15);
  Instance& a = sim.add(60);
  Instance& b = sim.add(60);
  // Converged once every 1 s window from then on has both within 20 % of
  // half the budget.
  TimeMs converged_at = 0;
  while (sim.now < 1000 + 12'000) {
    auto [mean_a, mean_b] = run_for(sim, a, b, 1000);
    const bool fair = within_20_percent(mean_a, 7.5) && within_20_percent(mean_b, 7.5);
    if (!fair) converged_at = 0;
    if (fair && converged_at == 0) converged_at = sim.now - 1000;
    MESSAGE("by " << sim.now - 1000 << " ms: A " << mean_a << ", B " << mean_b);
  }
  CHECK(sim.max_seen <= 15);
  REQUIRE(converged_at != 0);
  CHECK(converged_at - 1000 <= 5000);
  CHECK(a.host.upstream().refusals() + b.host.upstream().refusals() > 0);
  for (const FakeClient& c : a.clients) CHECK(c.error_code.empty());
  for (const FakeClient& c : b.clients) CHECK(c.error_code.empty());
}

TEST_CASE("a newcomer gets its share from an instance that holds the whole budget") {
  Simulation sim(15);
  Instance& a = sim.add(60);
  Instance& b = sim.add(0);
  run_for(sim, a, b, 3000);
  CHECK(a.host.upstream().logged_in() == 15);
  CHECK(a.host.upstream().yields() > 0);  // Alone, it still gives one back now and then.
  b.clients.resize(60);
  b.busy_until.assign(60, 0);
  // A never probes (it is at its cap): its busy survey finds the budget all
  // its own and yields a server, which B, retrying, takes.
  run_for(sim, a, b, 10'000);
  auto [mean_a, mean_b] = run_for(sim, a, b, 2000);
  MESSAGE("A " << mean_a << ", B " << mean_b);
  CHECK(within_20_percent(mean_a, 7.5));
  CHECK(within_20_percent(mean_b, 7.5));
  CHECK(sim.max_seen <= 15);
  for (const FakeClient& c : b.clients) CHECK(c.error_code.empty());
}

TEST_CASE("a loaded instance takes most of what the others leave") {
  // B holds 3 servers with clients that never let go (another app, say);
  // A's 60 clients want all the rest.
  Simulation sim(15);
  Instance& a = sim.add(60);
  Instance& b = sim.add(3);
  run_for(sim, a, b, 1000);
  for (size_t c = 0; c < b.busy_until.size(); ++c) b.busy_until[c] = TimeMs{1} << 40;
  run_for(sim, a, b, 3000);
  auto [mean_a, mean_b] = run_for(sim, a, b, 5000);
  MESSAGE("A " << mean_a << ", B " << mean_b << "; A refused " << a.host.upstream().refusals());
  CHECK(mean_b == doctest::Approx(3).epsilon(0.01));
  CHECK(mean_a >= 0.8 * 12);
}

}  // namespace
}  // namespace pgmux::proxy
