// Hive 2.3's SQL parser (hive-exec's ParseDriver), the Hive TD's hive engine runs, on SQL
// files, printing a verdict a line (common/ParseVerdicts.java):
//
//   java -cp 'lib/*:classes' HiveParse FILE...
//
// Each file is parsed as the single statement td> sends (ParseDriver.parse, as Hive's Driver
// compiles a query; "statement" is the root token's text). Digdag's ${...} are replaced
// before, by the test.
// The tests that run this are tests/test_sql_java_parsers.py.

import org.apache.hadoop.hive.ql.parse.ParseDriver;
import org.apache.hadoop.hive.ql.parse.ParseException;

import java.io.IOException;

public class HiveParse
{
    public static void main(String[] args)
        throws IOException
    {
        ParseDriver parser = new ParseDriver();
        ParseVerdicts.run(args, sql -> parser.parse(sql).getText(), ParseException.class);
    }
}
