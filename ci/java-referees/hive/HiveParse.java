// Hive 2.3's SQL parser (hive-exec's ParseDriver), the Hive TD's hive engine runs,
// on SQL files: one JSON object a line, in the order given:
//   {"file": PATH, "ok": true, "statement": "Query"}
//   {"file": PATH, "ok": false, "error": "line 3:7: mismatched input ..."}
//
//   java -cp 'lib/*:classes' HiveParse FILE...
//
// Each file is parsed as the single statement td> sends (ParseDriver.parse, as Hive's Driver
// compiles a query; "statement" is the root token's text). Digdag's ${...} are replaced
// before, by the test.
// The tests that run this are tests/test_sql_java_parsers.py.

import org.apache.hadoop.hive.ql.parse.ASTNode;
import org.apache.hadoop.hive.ql.parse.ParseDriver;
import org.apache.hadoop.hive.ql.parse.ParseException;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;

public class HiveParse
{
    public static void main(String[] args)
        throws IOException
    {
        ParseDriver parser = new ParseDriver();
        for (String arg : args) {
            String sql = new String(Files.readAllBytes(Paths.get(arg)), StandardCharsets.UTF_8);
            StringBuilder out = new StringBuilder("{\"file\": ").append(quote(arg));
            try {
                ASTNode tree = parser.parse(sql);
                out.append(", \"ok\": true, \"statement\": ").append(quote(tree.getText()));
            }
            catch (ParseException e) {
                out.append(", \"ok\": false, \"error\": ").append(quote(e.getMessage()));
            }
            catch (RuntimeException e) {
                out.append(", \"ok\": false, \"error\": ").append(quote(e.getClass().getSimpleName() + ": " + e.getMessage()));
            }
            System.out.println(out.append("}"));
        }
    }

    private static String quote(String text)
    {
        StringBuilder b = new StringBuilder("\"");
        for (char c : String.valueOf(text).toCharArray()) {
            if (c == '"' || c == '\\') {
                b.append('\\').append(c);
            }
            else if (c < 0x20) {
                b.append(String.format("\\u%04x", (int) c));
            }
            else {
                b.append(c);
            }
        }
        return b.append('"').toString();
    }
}
