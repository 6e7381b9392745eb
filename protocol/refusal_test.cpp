#include "protocol/refusal.h"

#include <doctest/doctest.h>

namespace pgmux::protocol {
namespace {

TEST_CASE("capacity refusals: PostgreSQL's and every Supavisor variant") {
  CHECK(is_capacity_refusal("53300", "sorry, too many clients already"));
  CHECK(is_capacity_refusal(
      "53300",
      "remaining connection slots are reserved for non-replication superuser connections"));
  CHECK(is_capacity_refusal("57P03", "the database system is starting up"));
  CHECK(is_capacity_refusal(
      "XX000",
      "MaxClientsInSessionMode: max clients reached - in Session mode max clients are limited to "
      "pool_size"));
  CHECK(is_capacity_refusal("XX000",
                            "(EMAXCONNSESSION) max clients reached in session mode - max clients "
                            "are limited to pool_size: 15"));
  CHECK(is_capacity_refusal("XX000", "(EMAXCONN) max client connections reached, limit: 200"));
  CHECK(is_capacity_refusal("XX000",
                            "(ECHECKOUTTIMEOUT) unable to check out connection from the "
                            "pool after 5000ms in Transaction mode"));
}

TEST_CASE("real rejections are not capacity refusals") {
  CHECK_FALSE(is_capacity_refusal("28P01", "password authentication failed for user \"app\""));
  CHECK_FALSE(is_capacity_refusal("3D000", "database \"nope\" does not exist"));
  CHECK_FALSE(is_capacity_refusal("XX000", "some internal error"));
  // The marker must come with XX000, as Supavisor sends it.
  CHECK_FALSE(is_capacity_refusal("28000", "MaxClientsInSessionMode"));
}

}  // namespace
}  // namespace pgmux::protocol
