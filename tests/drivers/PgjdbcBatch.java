// Usage: java -cp /usr/share/java/postgresql.jar tests/drivers/PgjdbcBatch.java \
//            postgresql://user:pass@host:port/db [connections]
//
// pgjdbc (Debian's libpostgresql-jdbc-java) with prepareThreshold=1: every statement is a named
// server-side statement from its first use. Each of `connections` threads (default 16) runs
// ROUNDS transactions of one executeBatch of BATCH inserts with a 200-character value: about
// 150 KB of Bind and Execute messages sent in one go, while the other connections hold the
// servers. With one server fewer than connections, someone's batch always arrives while it
// waits for a server.
//
// Prints `pgjdbc: N rows, E errors` and exits 0 only when E is 0 and the table has every row.
import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.atomic.AtomicLong;

public class PgjdbcBatch {
  static final int ROUNDS = 8;
  static final int BATCH = 600;

  public static void main(String[] args) throws Exception {
    if (args.length < 1) {
      System.err.println("usage: PgjdbcBatch postgresql://user:pass@host:port/db [connections]");
      System.exit(2);
    }
    URI uri = new URI(args[0]);
    int connections = args.length > 1 ? Integer.parseInt(args[1]) : 16;
    String[] userInfo = uri.getRawUserInfo().split(":", 2);
    String jdbc = "jdbc:postgresql://" + uri.getHost() + ":" + uri.getPort() + uri.getPath();
    Properties props = new Properties();
    props.setProperty("user", URLDecoder.decode(userInfo[0], StandardCharsets.UTF_8));
    if (userInfo.length > 1) {
      props.setProperty("password", URLDecoder.decode(userInfo[1], StandardCharsets.UTF_8));
    }
    props.setProperty("sslmode", "disable");
    props.setProperty("prepareThreshold", "1");
    props.setProperty("connectTimeout", "10");
    props.setProperty("socketTimeout", "60");

    List<String> errors = Collections.synchronizedList(new ArrayList<>());
    AtomicLong rows = new AtomicLong();
    try (Connection c = DriverManager.getConnection(jdbc, props);
        Statement s = c.createStatement()) {
      s.execute("create table if not exists drivers_jdbc (t int, r int, i int, v text)");
      s.execute("truncate drivers_jdbc");
    }

    String value = "v".repeat(200);
    CyclicBarrier start = new CyclicBarrier(connections);
    List<Thread> threads = new ArrayList<>();
    for (int t = 0; t < connections; t++) {
      final int thread = t;
      Thread th = new Thread(() -> {
        try (Connection c = DriverManager.getConnection(jdbc, props)) {
          c.setAutoCommit(false);
          start.await();
          for (int r = 0; r < ROUNDS; r++) {
            try (PreparedStatement ps =
                c.prepareStatement("insert into drivers_jdbc (t, r, i, v) values (?, ?, ?, ?)")) {
              for (int i = 0; i < BATCH; i++) {
                ps.setInt(1, thread);
                ps.setInt(2, r);
                ps.setInt(3, i);
                ps.setString(4, value);
                ps.addBatch();
              }
              int[] counts = ps.executeBatch();
              c.commit();
              rows.addAndGet(counts.length);
            }
          }
        } catch (Exception e) {
          String text = e.toString();
          errors.add("thread " + thread + ": " + (text.length() > 300 ? text.substring(0, 300) + "..." : text));
        }
      });
      threads.add(th);
      th.start();
    }
    for (Thread th : threads) th.join(120_000);
    long expected = (long) connections * ROUNDS * BATCH;
    try (Connection c = DriverManager.getConnection(jdbc, props);
        Statement s = c.createStatement();
        ResultSet rs = s.executeQuery("select count(*) from drivers_jdbc")) {
      rs.next();
      long count = rs.getLong(1);
      if (count != expected) errors.add("table has " + count + " rows, want " + expected);
    }
    System.out.println("pgjdbc: " + rows.get() + " rows, " + errors.size() + " errors");
    for (int i = 0; i < Math.min(5, errors.size()); i++) System.out.println("  " + errors.get(i));
    System.exit(errors.isEmpty() && rows.get() == expected ? 0 : 1);
  }
}
