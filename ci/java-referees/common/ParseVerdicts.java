// What the SQL-parser drivers (presto/PrestoParse, trino/TrinoParse, hive/HiveParse) share:
// read each file given, parse it with the driver's parser, and print one JSON object a line,
// in the order given:
//   {"file": PATH, "ok": true, "statement": "Query"}
//   {"file": PATH, "ok": false, "error": "line 3:7: mismatched input ..."}
// The parser's own refusal (its `refusal` exception class) gives its message; any other
// exception is named by its class too. tests/java_referees.py compiles this beside each driver.

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;

public final class ParseVerdicts
{
    public interface Parser
    {
        // The parsed statement's kind (a class or root token name); throws when refused.
        String parse(String sql) throws Exception;
    }

    private ParseVerdicts() {}

    public static void run(String[] files, Parser parser, Class<? extends Exception> refusal)
        throws IOException
    {
        for (String file : files) {
            String sql = new String(Files.readAllBytes(Paths.get(file)), StandardCharsets.UTF_8);
            StringBuilder out = new StringBuilder("{\"file\": ").append(quote(file));
            try {
                String statement = parser.parse(sql);  // (before any of its line is written)
                out.append(", \"ok\": true, \"statement\": ").append(quote(statement));
            }
            catch (Exception e) {
                String why = refusal.isInstance(e) ? e.getMessage() : e.getClass().getSimpleName() + ": " + e.getMessage();
                out.append(", \"ok\": false, \"error\": ").append(quote(why));
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
